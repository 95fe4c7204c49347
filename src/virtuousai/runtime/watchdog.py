"""``LeaseWatchdog``: finds RUNNING runs whose lease expired (the worker died, hangs, or lost the database) and
moves them on: back to PENDING with backoff while attempts remain, FAILED after the last one, CANCELLED if a cancel
was requested. Every move is a guarded ``transition`` (status, token and "still expired"), so several watchdogs in
several processes never act twice, and a worker that comes back finds its token stale.

Three parts, like every maintenance service: checked config, ``run_once()`` (one batch, returns counts; tests call
it directly) and ``run()`` (calls it on a timer until stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.runtime.kinds import KindRegistry, RetryPolicy, UnknownKind
from virtuousai.runtime.queue import ExpiredLease, RunQueue
from virtuousai.runtime.retry import decide_retry
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import LeaseLost, transition
from virtuousai.store.drivers import RunQueueDriver
from virtuousai.store.engine import transaction
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchdogConfig:
    interval_s: float
    batch_size: int = 100

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.batch_size < 1:
            raise ValueError("the watchdog needs a positive interval and batch size")


@dataclass(frozen=True)
class WatchdogCounts:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.requeued + self.failed + self.cancelled


class LeaseWatchdog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        driver: RunQueueDriver,
        registry: KindRegistry,
        config: WatchdogConfig,
    ) -> None:
        self.sessions = sessions
        self.queue = RunQueue(sessions, driver)
        self.registry = registry
        self.config = config

    async def run_once(self, now: datetime | None = None) -> WatchdogCounts:
        now = now or utcnow()
        requeued = failed = cancelled = 0
        for lease in await self.queue.expired_leases(now=now, limit=self.config.batch_size):
            try:
                target = await self._recover(lease, now)
            except LeaseLost:
                continue  # renewed, finished or recovered by someone else meanwhile
            requeued += target is RunStatus.PENDING
            failed += target is RunStatus.FAILED
            cancelled += target is RunStatus.CANCELLED
        return WatchdogCounts(requeued=requeued, failed=failed, cancelled=cancelled)

    async def _recover(self, lease: ExpiredLease, now: datetime) -> RunStatus:
        message = f"the worker's lease on attempt {lease.attempt} expired"
        error = {"type": "LeaseExpired", "message": message}
        event: dict[str, Any] = {"attempt": lease.attempt, "reason": "lease_expired"}
        values: dict[str, Any] = {"error": error}
        if lease.cancel_requested_at is not None:
            target = RunStatus.CANCELLED
            values = {"error": {"type": "Cancelled", "message": "cancelled; its worker stopped answering"}}
        else:
            decision = decide_retry(
                attempt=lease.attempt, max_attempts=lease.max_attempts, policy=self._policy(lease.kind), now=now
            )
            if decision.retry:
                target = RunStatus.PENDING
                values["available_at"] = decision.available_at
                event["retry_in_s"] = round(decision.delay_s, 3)
            else:
                target = RunStatus.FAILED
        async with transaction(self.sessions) as session:
            await transition(
                session,
                lease,
                target,
                token=lease.lease_token,
                values=values,
                event=event,
                where=[ActionRun.lease_expires_at < now],
                now=now,
            )
        log.warning("run %s: lease expired on attempt %d → %s", lease.id, lease.attempt, target.value)
        return target

    def _policy(self, kind: str) -> RetryPolicy:
        try:
            return self.registry.get(kind).retry
        except UnknownKind:
            return RetryPolicy()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("watchdog pass failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.interval_s)
