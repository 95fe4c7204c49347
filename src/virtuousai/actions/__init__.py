"""Actions: typed action kinds (the registry) and ActionRuns (the durable runs the workers execute)."""
