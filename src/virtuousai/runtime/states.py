"""The ActionRun state machine, as data. ``runtime/transition.py`` is the one function that applies it.

    AWAITING_APPROVAL ──approve──▶ PENDING ──claim──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
            │                        ▲  │                │
            └──reject──▶ CANCELLED   │  └─cancel──▶ CANCELLED
                                     └── retry / lease expired / released on shutdown

Terminal states map to an empty set: nothing ever moves a run out of them.

A run is created in one of ``CREATION_STATES``: AWAITING_APPROVAL (its kind needs an approval), PENDING (the usual
case), or RUNNING — only by a creator handing the run straight to a worker of its own process, already leased to
that worker (token 1, attempt 1, a RUNNING first event; ``runtime/handoff.py``). Such a run never needs an approval
and counts against its organization's concurrency like a claimed one; from its creation on it moves like a claimed
run.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class RunStatus(enum.StrEnum):
    # Parked until an admin decides; holds no worker. Moved by the approve/reject API.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    # Waiting for a worker (``available_at`` delays retries). Moved by a worker's claim or by cancel.
    PENDING = "PENDING"
    # Leased by one worker. Moved by that worker (fenced by ``lease_token``) or, once the lease expired, by the
    # watchdog.
    RUNNING = "RUNNING"
    # Terminal.
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return not ALLOWED[self]


ALLOWED: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.PENDING, RunStatus.CANCELLED}),
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.PENDING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED},
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

TERMINAL: frozenset[RunStatus] = frozenset(status for status, targets in ALLOWED.items() if not targets)


CREATION_STATES: frozenset[RunStatus] = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.PENDING, RunStatus.RUNNING})


class IllegalTransition(Exception):
    """A move the table does not allow (a programming error, or a request on a run in the wrong state)."""

    def __init__(self, current: RunStatus, target: RunStatus) -> None:
        super().__init__(f"illegal transition {current.value} → {target.value}")
        self.current = current
        self.target = target


def check_transition(current: RunStatus, target: RunStatus) -> None:
    if target not in ALLOWED[current]:
        raise IllegalTransition(current, target)


def check_creation(status: RunStatus) -> None:
    if status not in CREATION_STATES:
        raise ValueError(f"a run cannot be created {status.value}")
