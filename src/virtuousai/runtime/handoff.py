"""``LocalHandoff``: a new run given straight to a worker of this process, without the queue.

A run created PENDING waits for a wake-up and a claim transaction (two round trips and a ``NOTIFY`` hop). When the
creator runs in a process with a worker that has a free slot, it can instead create the run already RUNNING under
that worker's lease — ``lease_owner`` the worker, ``lease_token`` 1, attempt 1, a lease of ``lease_s`` and a RUNNING
first event, all in the creating INSERT — and hand it to ``Worker.adopt`` after its transaction commits. From then
on the run is exactly a claimed run: counted in the worker's concurrency, heart-beaten, cancellable, every write
fenced by its token. If the process dies between the commit and the end of the run, the lease runs out and the
watchdog re-queues the run (the normal recovery path); if the transaction rolls back, nothing was created.

The creator must ``reserve()`` the slot before deciding (so a concurrent claim cannot take it) and, after its
transaction, either ``adopt`` the run or ``release`` the reservation. Only a run that would be PENDING may be
created this way: never one that needs an approval, and never past the organization's concurrency limit
(the caller counts the organization's RUNNING runs, adopted ones included). Used by the automation engine for the next
steps of an automation run (``automations/engine.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from virtuousai.config import Settings
from virtuousai.runtime.states import RunStatus, check_creation
from virtuousai.runtime.worker import Worker


class LocalHandoff:
    def __init__(self, workers: Sequence[Worker], settings: Settings) -> None:
        self.workers = list(workers)
        self.lease_s = settings.lease_s
        self.org_limit = settings.per_org_concurrency

    def reserve(self) -> Worker | None:
        """A worker of this process with a slot now reserved for one adopted run, or None if every slot is taken."""
        for worker in self.workers:
            if worker.reserve_slot():
                return worker
        return None

    def running_columns(self, worker: Worker, now: datetime) -> dict[str, Any]:
        """The columns that make a new run RUNNING under ``worker``'s lease (what a claim would have set)."""
        check_creation(RunStatus.RUNNING)
        return {
            "status": RunStatus.RUNNING,
            "attempt": 1,
            "lease_token": 1,
            "lease_owner": worker.name,
            "lease_expires_at": now + timedelta(seconds=self.lease_s),
            "started_at": now,
            "last_event_seq": 1,
        }
