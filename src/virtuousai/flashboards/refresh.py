"""``FlashboardRefresher``: reruns and caches the tiles of flashboards that have a ``refresh_cron``, each tick once.

The shape of every maintenance service: a checked config, ``run_once(now)`` (one pass; returns counts; tests call it
with their own clock) and ``run(stop)`` (calls it on a timer). It reads ticks like the automations' cron
(``automations.scheduler.due_ticks``, croniter, UTC) but is not an automation: a refresh is the flashboard's own
cached derivation, not a run anyone approves, retries or audits, so it needs neither an automation nor an ActionRun.

Exactly once across processes: a tick is claimed by moving the flashboard's ``refreshed_tick`` forward in one
guarded UPDATE (``… WHERE refreshed_tick < :tick``); only the process whose update changed the row refreshes. Missed
ticks are not caught up one by one: the latest due tick fires (a cache needs only the newest rows). A process that
dies during a refresh loses that tick's cache; the next tick refreshes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.automations.scheduler import due_ticks
from virtuousai.automations.spec import CronTrigger
from virtuousai.data.engine import LakeQueryEngine
from virtuousai.flashboards.repository import RefreshLookup
from virtuousai.flashboards.service import FlashboardService
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefresherConfig:
    interval_s: float = 15.0
    tile_row_cap: int = 5_000

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.tile_row_cap < 1:
            raise ValueError("the refresher needs a positive interval and a tile row cap >= 1")


@dataclass
class RefreshCounts:
    refreshed: int = 0
    lost: int = 0  # ticks another process claimed first
    failed: int = 0


class FlashboardRefresher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: Callable[[], LakeQueryEngine],
        config: RefresherConfig,
    ) -> None:
        self.sessions = sessions
        self.engine = engine  # the process's shared engine, made on first use
        self.config = config

    async def run_once(self, now: datetime | None = None) -> RefreshCounts:
        now = now or utcnow()
        counts = RefreshCounts()
        async with self.sessions() as session:
            scheduled = await RefreshLookup(session).scheduled()
        for flashboard in scheduled:
            assert flashboard.refresh_cron is not None
            after = flashboard.refreshed_tick or flashboard.created_at
            ticks = due_ticks(CronTrigger(expression=flashboard.refresh_cron), after, now, 1)
            if not ticks:
                continue
            async with self.sessions() as session:
                if not await RefreshLookup(session).claim_tick(flashboard, ticks[-1]):
                    counts.lost += 1
                    continue
            tenant = TenantContext(tenant_id=flashboard.tenant_id)
            try:
                async with self.sessions() as session:
                    service = FlashboardService(session, tenant, self.engine(), tile_row_cap=self.config.tile_row_cap)
                    await service.refresh(flashboard.id)
            except Exception:
                counts.failed += 1
                log.exception("flashboard %s: the refresh of tick %s failed", flashboard.id, ticks[-1])
                continue
            counts.refreshed += 1
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("flashboard refresher pass failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.interval_s)
