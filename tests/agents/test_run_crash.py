"""``vai worker`` processes SIGKILLed in the middle of an agent run (PostgreSQL, real processes): once while a tool
call runs, once while a model call is in flight. Another worker continues from the last persisted step: the run
completes, each tool call has one ActionRun whose side effect happened once, and the model saw every tool result
once. This process only serves the API; the workers execute and advance everything."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.agents.conftest import TOOLS_MODULE, Agents
from tests.agents.kinds_tools import read_effects
from tests.helpers import eventually
from tests.llm.fake_providers import Turn
from tests.runtime.worker_processes import WorkerProcess, worker_env
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.runtime.tables import ActionRun

LEASE_S = 2.0


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Worker processes share one database: PostgreSQL only."""
    return str(request.param)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)  # no workers here: the subprocesses execute every step
    async with app.router.lifespan_context(app):
        yield app


async def running_action(app: FastAPI, kind: str, workers: list[WorkerProcess]) -> tuple[ActionRun, WorkerProcess]:
    """The RUNNING ActionRun of this kind and the worker that holds it."""
    by_name = {w.name: w for w in workers}

    async def holder() -> tuple[ActionRun, WorkerProcess] | None:
        async with app.state.sessions() as session:
            stmt = sa.select(ActionRun).where(ActionRun.kind == kind, ActionRun.status == "RUNNING")
            found = (await session.scalars(stmt)).all()
            await session.commit()
        for run in found:
            if run.lease_owner in by_name:
                return run, by_name[run.lease_owner]
        return None

    result: tuple[ActionRun, WorkerProcess] = await eventually(holder, timeout=30, what=f"a running {kind}")
    return result


@pytest.mark.slow
async def test_killed_workers_lose_nothing_and_repeat_no_tool(
    app: FastAPI, agents: Agents, db_url: str, tmp_path: Path, effects: Path
) -> None:
    release = tmp_path / "release-first-tool"
    model_hold = threading.Event()
    tag = await agents.llm(
        [
            Turn(tool_calls=[("agent_lookup", {"q": "first", "wait_for": str(release)})]),
            Turn(tool_calls=[("agent_lookup", {"q": "second"})], hold=model_hold),
            Turn(text="Both found."),
        ]
    )
    await agents.spec("durable")
    env = worker_env(
        db_url,
        tmp_path / "var",
        kind_modules=TOOLS_MODULE,
        lease_s=LEASE_S,
        poll_interval_s=0.2,
        drain_timeout_s=1,
        automation_sweep_interval_s=5,
    ) | {"AGENT_TOOL_EFFECTS": str(effects)}
    workers = [await WorkerProcess.start(f"worker-{n}", env, tmp_path, concurrency=4) for n in (1, 2)]
    try:
        for worker in workers:
            await worker.wait_ready()
        run = await agents.start("durable", "Find both.")

        # 1. In a tool call: the worker dies while the tool waits (before its effect).
        tool_run, victim = await running_action(app, "agent_lookup", workers)
        victim.kill()
        await victim.process.wait()
        release.touch()
        workers.append(replacement := await WorkerProcess.start("worker-3", env, tmp_path, concurrency=4))
        await replacement.wait_ready()

        # 2. In a model call: the worker dies while the provider holds its answer.
        await eventually(lambda: any(r.turn == 1 for r in agents.fake.requests_for(tag)), what="the second call")
        _, victim = await running_action(app, "agent_model_call", workers)
        victim.kill()
        await victim.process.wait()
        model_hold.set()

        done = await agents.wait(run["id"], timeout_s=60)
        assert done["status"] == "COMPLETED" and done["output"] == "Both found.", done

        # Each tool call: one ActionRun, one effect — although the first ran twice (killed, then again).
        tool_steps = [s for s in await agents.steps(run["id"]) if s["kind"] == "tool"]
        assert [s["args"]["q"] for s in tool_steps] == ["first", "second"]
        recorded = read_effects(effects)
        assert Counter(e["run_id"] for e in recorded) == Counter({s["action_run_id"]: 1 for s in tool_steps})
        starts = read_effects(effects.with_suffix(".started"))
        assert [s["attempt"] for s in starts if s["run_id"] == tool_run.id] == [1, 2]
        async with app.state.sessions() as session:
            kinds = Counter((await session.scalars(sa.select(ActionRun.kind))).all())
        assert kinds == Counter({"agent_lookup": 2, "agent_model_call": 3})
        # The model saw each result once, and was asked for its second turn again after the kill.
        last = agents.fake.requests_for(tag)[-1]
        assert len(last.tool_results) == 2
        assert sum(1 for r in agents.fake.requests_for(tag) if r.turn == 1) == 2
    finally:
        model_hold.set()
        for worker in workers:
            await worker.ensure_dead()
