"""Parent runs (automation runs, agent runs) advanced as their child ActionRuns end: ``orchestrator.py``."""
