"""``CronScheduler``: starts automation runs on their cron triggers, each tick exactly once across processes.

Three parts, like every maintenance service: a checked config, ``run_once(now)`` (one pass; returns counts; tests
call it with their own clock) and ``run()`` (calls it on a timer until stopped).

Exactly once: a tick is claimed by inserting its ``(automation, trigger, tick)`` row, unique in the database, in
the same transaction that stages the run. Any number of schedulers in any number of processes may look at the same
tick; one insert wins, the others hit the unique constraint and move on. The run records its trigger and tick.

Policies: ``overlap`` (a tick comes while a run of this trigger is still going) — ``skip`` it, ``queue`` it (the
run waits as PENDING until the earlier one ends) or ``allow`` it; ``catch_up`` (ticks missed while no scheduler
ran) — ``none`` (only a tick younger than ``grace_s`` fires), ``last`` (the latest missed tick fires) or ``all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.automations.repository import SchedulerLookup
from virtuousai.automations.run_repository import AutomationRunRepository
from virtuousai.automations.runs import stage_run
from virtuousai.automations.service import AutomationWithVersion
from virtuousai.automations.spec import CronTrigger, cron_trigger_key
from virtuousai.automations.tables import AutomationTriggerTick
from virtuousai.ids import new_id
from virtuousai.orchestration.orchestrator import Orchestrator
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerConfig:
    interval_s: float = 15.0
    grace_s: float = 300.0  # catch_up none: a tick at most this late still fires
    max_catch_up: int = 100  # catch_up all: at most this many missed ticks per pass

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.grace_s < 0 or self.max_catch_up < 1:
            raise ValueError("the scheduler needs a positive interval, a grace >= 0 and max_catch_up >= 1")


@dataclass
class SchedulerCounts:
    started: int = 0
    queued: int = 0
    skipped: int = 0
    missed: int = 0
    lost: int = 0  # ticks another scheduler claimed first


def due_ticks(trigger: CronTrigger, after: datetime, now: datetime, limit: int) -> list[datetime]:
    """Ticks in ``(after, now]`` in UTC, read in the trigger's timezone; at most the last ``limit``."""
    zone = ZoneInfo(trigger.timezone)
    schedule = croniter(trigger.expression, after.astimezone(zone))
    ticks: list[datetime] = []
    while True:
        tick = schedule.get_next(datetime).astimezone(UTC)
        if tick > now:
            return ticks
        ticks.append(tick)
        if len(ticks) > limit:
            ticks.pop(0)


class CronScheduler:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], orchestrator: Orchestrator, config: SchedulerConfig
    ) -> None:
        self.sessions = sessions
        self.orchestrator = orchestrator
        self.config = config

    async def run_once(self, now: datetime | None = None) -> SchedulerCounts:
        now = now or utcnow()
        counts = SchedulerCounts()
        async with self.sessions() as session:
            current = await SchedulerLookup(session).current_versions()
        for automation, version in current:
            if not any(t.get("type") == "cron" for t in version.spec.get("triggers", [])):
                continue
            found = AutomationWithVersion(automation, version)
            for position, trigger in enumerate(found.spec.triggers):
                if isinstance(trigger, CronTrigger):
                    await self._trigger(found, trigger, cron_trigger_key(trigger, position), now, counts)
        return counts

    async def _trigger(
        self, found: AutomationWithVersion, trigger: CronTrigger, key: str, now: datetime, counts: SchedulerCounts
    ) -> None:
        async with self.sessions() as session:
            last = await SchedulerLookup(session).last_tick(found.automation.id, key)
        # A trigger never fires for ticks from before its version existed.
        after = last or found.version.created_at
        ticks = due_ticks(trigger, after, now, self.config.max_catch_up)
        if not ticks:
            return
        if trigger.catch_up != "all":
            ticks = ticks[-1:]
        for tick in ticks:
            late = now - tick > timedelta(seconds=self.config.grace_s)
            missed = trigger.catch_up == "none" and late
            await self._claim(found, trigger, key, tick, counts, missed=missed)

    async def _claim(
        self,
        found: AutomationWithVersion,
        trigger: CronTrigger,
        key: str,
        tick: datetime,
        counts: SchedulerCounts,
        *,
        missed: bool,
    ) -> None:
        tenant = TenantContext(tenant_id=found.automation.tenant_id)
        run_id: str | None = None
        async with self.sessions() as session:
            outcome = "missed"
            if not missed:
                active = await AutomationRunRepository(session, tenant).active_for_trigger(found.automation.id, key)
                outcome = "skipped" if active and trigger.overlap == "skip" else "started"
                if active and trigger.overlap == "queue":
                    outcome = "queued"
            if outcome in ("started", "queued"):
                run = stage_run(
                    session, found, dict(trigger.params), trigger="cron", created_by=None, trigger_key=key, tick=tick
                )
                run_id = run.id
            session.add(
                AutomationTriggerTick(
                    id=new_id("tick"),
                    tenant_id=tenant.tenant_id,
                    automation_id=found.automation.id,
                    trigger_key=key,
                    tick=tick,
                    outcome=outcome,
                    automation_run_id=run_id,
                    created_at=utcnow(),
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                counts.lost += 1
                return
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        if run_id is not None:
            log.info("automation %s: cron %s tick %s → run %s", found.automation.slug, key, tick, run_id)
            await self.orchestrator.advance(tenant.tenant_id, run_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("cron scheduler pass failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.interval_s)
