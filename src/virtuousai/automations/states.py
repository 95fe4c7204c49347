"""The AutomationRun and step state machines, as data. ``engine.py`` applies them through one function each.

    run:   PENDING ──start──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
              └──────cancel─────────────▶ CANCELLED

    step:  PENDING ──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
              └──▶ SKIPPED (`when` false, or a dependency did not succeed) | CANCELLED (the run ended)

Terminal states map to an empty set: nothing ever moves a run or a step out of them. Retrying a run creates a new
run (``retry_of``) that reuses the completed steps' outputs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class AutomationRunStatus(enum.StrEnum):
    # Created; waiting for the engine's first pass (or, queued by a cron trigger, for the previous run to end).
    PENDING = "PENDING"
    # Steps are being executed. Moved by the engine when every step is terminal, or by cancel.
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return not RUN_ALLOWED[self]


RUN_ALLOWED: Mapping[AutomationRunStatus, frozenset[AutomationRunStatus]] = {
    AutomationRunStatus.PENDING: frozenset(
        {AutomationRunStatus.RUNNING, AutomationRunStatus.CANCELLED, AutomationRunStatus.FAILED}
    ),
    AutomationRunStatus.RUNNING: frozenset(
        {AutomationRunStatus.COMPLETED, AutomationRunStatus.FAILED, AutomationRunStatus.CANCELLED}
    ),
    AutomationRunStatus.COMPLETED: frozenset(),
    AutomationRunStatus.FAILED: frozenset(),
    AutomationRunStatus.CANCELLED: frozenset(),
}


class StepStatus(enum.StrEnum):
    # Waiting for its dependencies.
    PENDING = "PENDING"
    # Its ActionRun(s) exist; moved when they are all terminal.
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return not STEP_ALLOWED[self]


STEP_ALLOWED: Mapping[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {StepStatus.RUNNING, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
    ),
    StepStatus.RUNNING: frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED}),
    StepStatus.COMPLETED: frozenset(),
    StepStatus.FAILED: frozenset(),
    StepStatus.SKIPPED: frozenset(),
    StepStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, current: enum.StrEnum, target: enum.StrEnum) -> None:
        super().__init__(f"illegal transition {current.value} → {target.value}")


def check_run_transition(current: AutomationRunStatus, target: AutomationRunStatus) -> None:
    if target not in RUN_ALLOWED[current]:
        raise IllegalTransition(current, target)


def check_step_transition(current: StepStatus, target: StepStatus) -> None:
    if target not in STEP_ALLOWED[current]:
        raise IllegalTransition(current, target)
