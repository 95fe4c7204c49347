"""The ActionRun state machine, as data (``runtime/machine.py``). ``runtime/transition.py`` applies it.

    AWAITING_APPROVAL ──approve──▶ PENDING ──claim──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
            │                        ▲  │                │
            └──reject──▶ CANCELLED   │  └─cancel──▶ CANCELLED
                                     └── retry / lease expired / released on shutdown

Terminal states map to an empty set: nothing ever moves a run out of them. A run is created AWAITING_APPROVAL (its
kind needs an approval) or PENDING (``runtime/creation.py``) — or RUNNING, already leased to the worker whose slot
its parent's previous child frees (``creation.Lease``): from then on it moves like a claimed run.
"""

from __future__ import annotations

import enum

from virtuousai.runtime.machine import IllegalTransition, StateMachine


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
        return ACTION_RUN.is_terminal(self)


ACTION_RUN: StateMachine[RunStatus] = StateMachine(
    "action run",
    {
        RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.PENDING, RunStatus.CANCELLED}),
        RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
        RunStatus.RUNNING: frozenset({RunStatus.PENDING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}),
        RunStatus.COMPLETED: frozenset(),
        RunStatus.FAILED: frozenset(),
        RunStatus.CANCELLED: frozenset(),
    },
)
ALLOWED = ACTION_RUN.allowed
TERMINAL = ACTION_RUN.terminal
# Not terminal: a worker, an approver or the queue still has to move it.
ACTIVE: frozenset[RunStatus] = frozenset(RunStatus) - TERMINAL
CREATION_STATES: frozenset[RunStatus] = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.PENDING, RunStatus.RUNNING})


def check_transition(current: RunStatus, target: RunStatus) -> None:
    ACTION_RUN.check(current, target)


__all__ = ["ACTION_RUN", "ACTIVE", "ALLOWED", "CREATION_STATES", "TERMINAL", "IllegalTransition", "RunStatus"]
