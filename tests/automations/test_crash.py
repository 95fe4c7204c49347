"""A ``vai worker`` SIGKILLed in the middle of an automation run (PostgreSQL, real processes).

Two worker subprocesses execute the run's steps and drive the engine (their ``on_run_finished`` hooks); this process
only starts the run. The test kills the worker that is executing a fan-out item whose effect is already committed,
so that item runs again elsewhere. Afterwards the run is COMPLETED, every step item has exactly one ActionRun and
exactly one committed effect — although executions repeated (an attempt > 1, a ``duplicate`` effect recognised by
the ActionRun id). Effects are counted by ``tests.automations.kinds_step_effects``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

import tests.automations.kinds_step_effects  # noqa: F401  (registers test_step_effect for validation here)
from tests.automation_fixtures import Automations, steps_by_key
from tests.automations.kinds_step_effects import create_effect_tables, read_step_effects
from tests.helpers import eventually
from tests.runtime.worker_processes import WorkerProcess, worker_env
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.store.drivers.postgres import asyncpg_dsn

LEASE_S = 2.0
ITEMS = 12


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Worker processes share one database: PostgreSQL only."""
    return str(request.param)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)  # no workers here: the subprocesses execute every step
    async with app.router.lifespan_context(app):
        yield app


def effect(step: str, work_s: float, index: str | int = 0) -> dict[str, object]:
    inputs = {"automation_run_id": "${{ run.id }}", "step": step, "index": index, "work_s": work_s}
    return {"key": step, "action": "test_step_effect", "inputs": inputs}


SPEC_STEPS = [
    effect("first", 0.2),
    {**effect("fan", 1.0, "${{ index }}"), "for_each": list(range(ITEMS)), "max_parallel": 6, "depends_on": ["first"]},
    effect("side", 0.2) | {"depends_on": ["first"]},
    effect("join", 0.2) | {"depends_on": ["fan", "side"]},
    effect("last", 0.2) | {"depends_on": ["join"]},
]


@pytest.mark.slow
async def test_a_killed_worker_loses_no_step_and_runs_none_twice(
    automations: Automations, app: FastAPI, db_url: str, tmp_path: Path
) -> None:
    dsn = asyncpg_dsn(sa.make_url(db_url))
    await create_effect_tables(dsn)
    env = worker_env(
        db_url,
        tmp_path / "var",
        kind_modules="tests.automations.kinds_step_effects",
        lease_s=LEASE_S,
        poll_interval_s=0.2,
        drain_timeout_s=1,
        automation_sweep_interval_s=10,  # completions drive the run; the sweep is only the safety net
    )
    workers = [await WorkerProcess.start(f"worker-{n}", env, tmp_path, concurrency=4) for n in (1, 2)]
    try:
        await asyncio.gather(*(w.wait_ready() for w in workers))
        await automations.create(SPEC_STEPS)
        started = await automations.start()

        victim = await _worker_holding_an_applied_effect(app, dsn, workers)
        victim.kill()
        await victim.process.wait()

        run = await automations.wait(started["id"], timeout_s=30)
        assert run["status"] == "COMPLETED", run
        steps = steps_by_key(run)
        assert [o["index"] for o in steps["fan"]["output"]] == list(range(ITEMS))

        effects, attempts = await read_step_effects(dsn)
        expected = [("first", 0), *(("fan", i) for i in range(ITEMS)), ("join", 0), ("last", 0), ("side", 0)]
        assert sorted((e.step_key, e.item_index) for e in effects) == sorted(expected)  # one effect per step item
        assert all(e.automation_run_id == run["id"] for e in effects)
        action_runs = await _action_runs(app)
        assert Counter(ar.step_key for ar in action_runs) == Counter(step for step, _ in expected)  # created once
        assert {e.action_run_id for e in effects} == {ar.id for ar in action_runs}
        assert not [a for a in attempts if a.outcome == "foreign"]
        # … although executions repeated: the killed worker's items ran again, one after its effect was committed.
        assert max(ar.attempt for ar in action_runs) > 1
        assert any(a.outcome == "duplicate" for a in attempts)
        assert Counter(a.outcome for a in attempts)["started"] > len(expected)
    finally:
        for worker in workers:
            await worker.ensure_dead()


async def _worker_holding_an_applied_effect(
    app: FastAPI, dsn: str, workers: list[WorkerProcess], timeout_s: float = 20
) -> WorkerProcess:
    """The worker that is executing a fan-out item whose effect is committed and whose run is not finished."""
    by_name = {w.name: w for w in workers}

    async def holder() -> WorkerProcess | None:
        effects, _ = await read_step_effects(dsn)
        applied = {e.action_run_id for e in effects if e.step_key == "fan"}
        for action_run in await _action_runs(app):
            if action_run.id in applied and action_run.status is RunStatus.RUNNING and action_run.lease_owner:
                return by_name[action_run.lease_owner]
        return None

    found: WorkerProcess = await eventually(
        holder, timeout=timeout_s, interval=0.05, what="a fan-out item caught between its effect and its completion"
    )
    return found


async def _action_runs(app: FastAPI) -> list[ActionRun]:
    async with app.state.sessions() as session:
        rows = (await session.scalars(sa.select(ActionRun).order_by(ActionRun.id))).all()
        await session.commit()  # ends the read; keeps the objects loaded
    return list(rows)
