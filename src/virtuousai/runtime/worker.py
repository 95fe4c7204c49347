"""``Worker``: the claim-and-dispatch loop, with two side tasks.

- the loop claims up to ``claim_batch_size`` runs (and at most half its slots) while it has free slots, hands each
  to ``RunExecutor`` as a task, then waits for a wake-up (enqueued / a slot freed), the poll interval, or stop —
  whichever comes first;
- ``heartbeat`` renews the leases of in-flight runs every third of the lease; a run missing from the answer was
  lost (its executor stops at once, writing nothing), a run with ``cancel_requested_at`` gets its token tripped;
- ``abort poller`` looks for cancel requests every poll interval, and at once on a ``cancel`` wake-up, so
  cancellation does not wait for the next heartbeat.

A freed slot starts a claim at once only while runs may be waiting (the last claim filled every slot it asked
for, or an ``enqueued`` wake-up came since); after a claim that found the queue short, new work announces itself
with a wake-up, and the poll interval catches the rest (a retry's backoff ending, an organization dropping below
its concurrency limit).

A monitor stops the worker if a side task dies. ``stop()`` drains: no more claims; in-flight runs get
``drain_timeout_s`` to finish, then are released back to PENDING (their attempt given back) for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.ids import new_id
from virtuousai.runtime.context import ConnectionResolverFactory, SharedResources
from virtuousai.runtime.executor import RunControl, RunExecutor
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.queue import RunQueue
from virtuousai.store.drivers import ClaimedRun, RunQueueDriver, Wakeup, WakeupHub

log = logging.getLogger(__name__)


def worker_name() -> str:
    """Unique per worker, readable in ``lease_owner``: host, pid and a short random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[-6:]}"


class Worker:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        driver: RunQueueDriver,
        hub: WakeupHub,
        registry: KindRegistry,
        settings: Settings,
        concurrency: int,
        connections: ConnectionResolverFactory | None = None,
        shared: SharedResources | None = None,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name or worker_name()
        self.settings = settings
        self.concurrency = concurrency
        # At most half the slots per claim, so a worker is never idle between batches: while one batch's outcomes
        # are being recorded, the other half of the slots are already claimed and running (double buffering; a
        # batch as large as the concurrency measured ~10 % slower on no-op work).
        self.claim_batch = max(1, min(settings.claim_batch_size, concurrency // 2))
        self.queue = RunQueue(sessions, driver)
        self.executor = RunExecutor(
            sessions, registry, settings, owner=self.name, driver=driver, connections=connections, shared=shared
        )
        self.hub = hub
        self.in_flight: dict[str, RunControl] = {}
        # Whether runs may be waiting that a claim now would find: the last claim took all it asked for, or could
        # not ask (no free slot), or an ``enqueued`` wake-up came since it began. A freed slot starts a claim only
        # then; otherwise the queue was empty and a new run announces itself.
        self._backlog = True
        self._enqueued = 0  # ``enqueued`` wake-ups heard so far
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._check_aborts = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to drain and return from ``run()``. Safe to call more than once."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        unsubscribe = self.hub.subscribe(self._on_wakeup)
        side_tasks = [
            asyncio.create_task(self._heartbeat(), name=f"{self.name}:heartbeat"),
            asyncio.create_task(self._abort_poller(), name=f"{self.name}:abort-poller"),
        ]
        loop_task = asyncio.create_task(self._claim_loop(), name=f"{self.name}:claim-loop")
        try:
            done, _ = await asyncio.wait([loop_task, *side_tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not loop_task and not task.cancelled() and task.exception() is not None:
                    log.error("worker %s: side task %s died", self.name, task.get_name(), exc_info=task.exception())
            self.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            await self._drain()
        finally:
            unsubscribe()
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            if not loop_task.done():
                loop_task.cancel()

    # -- the loop ----------------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            free = self.concurrency - len(self.in_flight)
            claimed: list[ClaimedRun] = []
            self._backlog = True
            if free > 0:
                heard, limit = self._enqueued, min(free, self.claim_batch)
                try:
                    claimed = await self.queue.claim(
                        owner=self.name,
                        limit=limit,
                        org_limit=self.settings.per_org_concurrency,
                        lease_s=self.settings.lease_s,
                    )
                    self._backlog = len(claimed) == limit or self._enqueued != heard
                except Exception:
                    log.exception("worker %s: claim failed; retrying after the poll interval", self.name)
                for run in claimed:
                    self._dispatch(run)
            if claimed and len(claimed) == min(free, self.claim_batch):
                continue  # a full batch: there may be more waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval_s)

    def _dispatch(self, run: ClaimedRun) -> None:
        control = RunControl(run)
        self.in_flight[run.id] = control
        task = asyncio.create_task(self._execute(control), name=f"run:{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, control: RunControl) -> None:
        try:
            while True:
                try:
                    next_run = await self.executor.execute(control)
                except Exception:
                    # The executor records every outcome itself; reaching here means the database failed us while
                    # recording. The lease runs out and the watchdog re-queues the run.
                    log.exception("worker %s: run %s could not be recorded", self.name, control.run.id)
                    return
                self.in_flight.pop(control.run.id, None)
                if next_run is None:
                    return
                # The run's parent handed its next child to this slot, already RUNNING under this worker's lease.
                control = RunControl(next_run)
                self.in_flight[next_run.id] = control
        finally:
            self.in_flight.pop(control.run.id, None)
            self._slot_freed()

    def _slot_freed(self) -> None:
        # Claim again at once only if runs may be waiting. A run held back by its organization's concurrency limit
        # is found by the next claim a wake-up or the poll interval starts (as one freed by another process is).
        if self._backlog:
            self._wake.set()

    def _on_wakeup(self, wakeup: Wakeup) -> None:
        if wakeup.topic == "enqueued":
            self._enqueued += 1
            self._wake.set()
        elif wakeup.topic == "cancel" and wakeup.run_id in self.in_flight:
            self._check_aborts.set()

    # -- side tasks --------------------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            held = self._leases()
            try:
                alive = await self.queue.renew_leases(held, lease_s=self.settings.lease_s)
            except Exception:
                log.exception("worker %s: heartbeat failed; leases may expire", self.name)
                continue
            for run_id in held:
                control = self.in_flight.get(run_id)
                if control is None:
                    continue
                status = alive.get(run_id)
                if status is None:
                    control.lease_lost.set()
                elif status.cancel_requested:
                    control.request_cancel()

    async def _abort_poller(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_aborts.wait(), timeout=self.settings.poll_interval_s)
            self._check_aborts.clear()
            held = {run_id: token for run_id, token in self._leases().items() if not self._cancelling(run_id)}
            try:
                to_cancel = await self.queue.cancel_requested(held)
            except Exception:
                log.exception("worker %s: abort poll failed", self.name)
                continue
            for run_id in to_cancel:
                control = self.in_flight.get(run_id)
                if control is not None:
                    control.request_cancel()

    # -- shutdown ----------------------------------------------------------------------------------------------

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info("worker %s: draining %d run(s)", self.name, len(self._tasks))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout_s
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        if self._tasks:
            for control in list(self.in_flight.values()):
                control.release.set()
            await asyncio.wait(set(self._tasks), timeout=max(5.0, self.settings.cancel_grace_s))

    def _leases(self) -> dict[str, int]:
        return {run_id: control.run.lease_token for run_id, control in list(self.in_flight.items())}

    def _cancelling(self, run_id: str) -> bool:
        """Already asked to stop. A run whose own timeout tripped its token is still polled: a request that comes
        during the timeout's grace must end it, not let it be retried."""
        control = self.in_flight.get(run_id)
        return control is not None and control.cancel_requested
