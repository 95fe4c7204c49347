"""The AutomationRun and step state machines, as data (``runtime/machine.py``). ``automations/plan.py`` decides the
moves and ``automations/progress.py`` writes them.

    run:   PENDING ──start──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
              ├──cancel──────────────────▶ CANCELLED
              └──a template step's template is gone, or a fan-out is too large ──▶ FAILED

    step:  PENDING ──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
              ├──▶ SKIPPED (`when` false, or a dependency did not succeed) | CANCELLED (the run ended)
              └──▶ COMPLETED (a `for_each` over no items) | FAILED (its expressions or inputs fail before any run)

Terminal states map to an empty set: nothing ever moves a run or a step out of them. Retrying a run creates a new
run (``retry_of``) that reuses the completed steps' outputs.
"""

from __future__ import annotations

import enum

from virtuousai.runtime.machine import IllegalTransition, StateMachine


class AutomationRunStatus(enum.StrEnum):
    # Created; waiting for its first pass (or, queued by a cron trigger, for the previous run to end).
    PENDING = "PENDING"
    # Steps are being executed. Moved by a pass when every step is terminal, or by cancel.
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return AUTOMATION_RUN.is_terminal(self)


AUTOMATION_RUN: StateMachine[AutomationRunStatus] = StateMachine(
    "automation run",
    {
        AutomationRunStatus.PENDING: frozenset(
            {AutomationRunStatus.RUNNING, AutomationRunStatus.CANCELLED, AutomationRunStatus.FAILED}
        ),
        AutomationRunStatus.RUNNING: frozenset(
            {AutomationRunStatus.COMPLETED, AutomationRunStatus.FAILED, AutomationRunStatus.CANCELLED}
        ),
        AutomationRunStatus.COMPLETED: frozenset(),
        AutomationRunStatus.FAILED: frozenset(),
        AutomationRunStatus.CANCELLED: frozenset(),
    },
)


class StepStatus(enum.StrEnum):
    # Waiting for its dependencies.
    PENDING = "PENDING"
    # Its ActionRun(s) exist or are being created; moved when they are all terminal.
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return STEP.is_terminal(self)


STEP: StateMachine[StepStatus] = StateMachine(
    "automation step",
    {
        StepStatus.PENDING: frozenset(
            {StepStatus.RUNNING, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
        ),
        StepStatus.RUNNING: frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED}),
        StepStatus.COMPLETED: frozenset(),
        StepStatus.FAILED: frozenset(),
        StepStatus.SKIPPED: frozenset(),
        StepStatus.CANCELLED: frozenset(),
    },
)


__all__ = ["AUTOMATION_RUN", "STEP", "AutomationRunStatus", "IllegalTransition", "StepStatus"]
