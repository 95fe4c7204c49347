"""The cron scheduler, driven by ``run_once(now)`` with a test clock: exactly once, overlap and catch-up."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from tests.automation_fixtures import Automations
from virtuousai.actions.registry import default_registry
from virtuousai.automations.scheduler import CronScheduler, SchedulerConfig
from virtuousai.automations.tables import AutomationRun
from virtuousai.config import Settings
from virtuousai.process import build_orchestrator
from virtuousai.store.engine import make_engine, make_sessionmaker

EVERY_5_MIN = "*/5 * * * *"


async def cron_automation(
    automations: Automations, steps: list[dict[str, Any]] | None = None, **trigger: Any
) -> datetime:
    """Create an automation with one cron trigger; returns the first tick after its creation."""
    created = await automations.create(
        steps or [{"key": "a", "action": "echo", "inputs": {"day": "${{ params.day }}"}}],
        triggers=[{"type": "cron", "expression": EVERY_5_MIN, "params": {"day": "today"}, **trigger}],
    )
    made = datetime.fromisoformat(created["created_at"])
    minute = (made.minute // 5 + 1) * 5
    return made.replace(second=0, microsecond=0) + timedelta(minutes=minute - made.minute)


async def cron_runs(app: FastAPI) -> list[AutomationRun]:
    async with app.state.sessions() as session:
        stmt = sa.select(AutomationRun).where(AutomationRun.trigger == "cron").order_by(AutomationRun.tick)
        return list((await session.scalars(stmt)).all())


def scheduler_of(app: FastAPI, **config: Any) -> CronScheduler:
    return CronScheduler(app.state.sessions, app.state.orchestrator, SchedulerConfig(**config))


async def test_each_tick_fires_exactly_once_with_two_schedulers(
    automations: Automations, app: FastAPI, settings: Settings
) -> None:
    first_tick = await cron_automation(automations, overlap="allow")
    # Two schedulers with their own engines and connection pools, as in two processes.
    engines = [make_engine(settings.resolved_database_url) for _ in range(2)]
    try:
        schedulers = [
            CronScheduler(
                make_sessionmaker(e),
                build_orchestrator(make_sessionmaker(e), default_registry(), settings),
                SchedulerConfig(),
            )
            for e in engines
        ]
        early = await asyncio.gather(*(s.run_once(first_tick - timedelta(seconds=1)) for s in schedulers))
        assert sum(c.started for c in early) == 0
        for n in range(4):
            now = first_tick + timedelta(minutes=5 * n, seconds=2)
            counts = await asyncio.gather(*(s.run_once(now) for s in schedulers))
            assert sum(c.started for c in counts) == 1
            again = await asyncio.gather(*(s.run_once(now) for s in schedulers))  # a second look changes nothing
            assert sum(c.started for c in again) == 0
    finally:
        for e in engines:
            await e.dispose()
    runs = await cron_runs(app)
    assert [r.tick for r in runs] == [first_tick + timedelta(minutes=5 * n) for n in range(4)]
    assert {(r.trigger_key, str(r.params)) for r in runs} == {("cron_0", "{'day': 'today'}")}
    for run in runs:
        finished = await automations.wait(run.id)
        assert finished["status"] == "COMPLETED"
        assert finished["steps"][0]["output"] == {"day": "today"}


async def test_overlap_skip_and_queue(automations: Automations, app: FastAPI) -> None:
    slow = [{"key": "slow", "action": "sleep", "inputs": {"seconds": 30}}]
    first_tick = await cron_automation(automations, slow, overlap="skip", key="nightly")
    scheduler = scheduler_of(app)
    assert (await scheduler.run_once(first_tick + timedelta(seconds=1))).started == 1
    assert (await scheduler.run_once(first_tick + timedelta(minutes=5, seconds=1))).skipped == 1
    [running] = await cron_runs(app)

    spec = (await automations.client.get("/api/v1/automations/slug:flow", headers=automations.org.headers)).json()
    spec["spec"]["triggers"][0]["overlap"] = "queue"
    response = await automations.client.put(
        "/api/v1/automations/slug:flow", json=spec["spec"], headers=automations.org.headers
    )
    assert response.json()["version"] == 2
    assert (await scheduler.run_once(first_tick + timedelta(minutes=10, seconds=1))).queued == 1
    _, queued = await cron_runs(app)
    assert (await automations.get(queued.id))["status"] == "PENDING"  # waits for the running one
    await automations.client.post(f"/api/v1/automation-runs/{running.id}/cancel", headers=automations.org.headers)
    started = await automations.wait(queued.id, until=lambda r: r["status"] == "RUNNING")
    assert started["version"] == 2
    await automations.client.post(f"/api/v1/automation-runs/{queued.id}/cancel", headers=automations.org.headers)


async def test_catch_up_policies(automations: Automations, app: FastAPI) -> None:
    first_tick = await cron_automation(automations, catch_up="none", overlap="allow")
    late = first_tick + timedelta(minutes=20, seconds=30)  # ticks at +0, +5, +10, +15, +20 were missed
    counts = await scheduler_of(app, grace_s=10).run_once(late)
    assert (counts.started, counts.missed) == (0, 1)  # none: the latest tick is too late; no run

    async def switch(policy: str) -> None:
        spec = (await automations.client.get("/api/v1/automations/slug:flow", headers=automations.org.headers)).json()
        spec["spec"]["triggers"][0]["catch_up"] = policy
        await automations.client.put(
            "/api/v1/automations/slug:flow", json=spec["spec"], headers=automations.org.headers
        )

    await switch("last")
    later = late + timedelta(minutes=15)  # +25, +30, +35 missed
    assert (await scheduler_of(app, grace_s=10).run_once(later)).started == 1
    assert [r.tick for r in await cron_runs(app)] == [first_tick + timedelta(minutes=35)]

    await switch("all")
    assert (await scheduler_of(app, grace_s=10).run_once(later + timedelta(minutes=15))).started == 3
    ticks = [r.tick for r in await cron_runs(app)]
    assert ticks == [first_tick + timedelta(minutes=m) for m in (35, 40, 45, 50)]
