"""The next step handed straight to the finishing process's worker (``runtime/handoff.py``), end to end.

The API's engine creates the first step PENDING (the API process hands nothing off here); the worker's
``on_run_finished`` hook creates the next ones already RUNNING under that worker's lease and adopts them. These
tests prove such a run is the worker's like a claimed one: fenced by its token, cancellable, within the
organization's concurrency limit, and never created past an approval gate.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.automations.conftest import Automations, steps_by_key
from virtuousai.actions.tables import ActionRun, ActionRunEvent
from virtuousai.config import Settings
from virtuousai.runtime.executor import RunControl
from virtuousai.runtime.worker import Worker
from virtuousai.store.engine import transaction

TEST_KINDS = "tests.runtime.kinds_for_tests"  # test_write: a write-risk kind


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The automations' settings, with a short lease, room for one running run per organization and a write kind.
    return settings.model_copy(
        update={
            "lease_s": 1.5,
            "cancel_grace_s": 0.5,
            "drain_timeout_s": 0.5,
            "worker_concurrency": 4,
            "per_org_concurrency": 1,
            "kind_modules": (*Settings().kind_modules, TEST_KINDS),
        }
    )


def worker_of(app: FastAPI) -> Worker:
    [worker] = app.state.runtime.workers
    assert isinstance(worker, Worker)
    return worker


async def action_run(app: FastAPI, run_id: str) -> ActionRun:
    async with app.state.sessions() as session:
        run = await session.scalar(sa.select(ActionRun).where(ActionRun.id == run_id))
        await session.commit()  # ends the read; keeps the object loaded
    assert isinstance(run, ActionRun)
    return run


async def events(app: FastAPI, run_id: str) -> list[dict[str, Any]]:
    async with app.state.sessions() as session:
        stmt = sa.select(ActionRunEvent.data).where(ActionRunEvent.run_id == run_id).order_by(ActionRunEvent.seq)
        rows = (await session.scalars(stmt)).all()
        await session.commit()
    return [dict(row) for row in rows]


async def until(check: Any, what: str, timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def started_step(automations: Automations, run_id: str, key: str) -> str:
    async def created() -> str | None:
        ids = steps_by_key(await automations.get(run_id))[key]["action_run_ids"]
        return ids[0] if ids else None

    result: str = await until(created, f"step {key!r} to have its ActionRun")
    return result


async def steal_adopted_run(app: FastAPI, run_id: str) -> RunControl:
    """Once the worker adopted ``run_id``, another claimer takes it behind its back (as after a long pause): the
    token moves on. Returns the worker's control of the run, holding the old token."""
    worker = worker_of(app)

    async def in_flight() -> bool:
        return run_id in worker.in_flight

    await until(in_flight, "the worker to adopt the run")
    assert (await action_run(app, run_id)).lease_owner == worker.name
    control = worker.in_flight[run_id]
    async with transaction(app.state.sessions) as session:
        await session.execute(
            sa.update(ActionRun)
            .where(ActionRun.id == run_id)
            .values(lease_token=ActionRun.lease_token + 1, lease_owner="thief")
        )
    return control


CHAIN = [
    {"key": "first", "action": "echo", "inputs": {"n": 1}},
    {"key": "second", "action": "sleep", "inputs": {"seconds": 30}, "depends_on": ["first"]},
]


async def test_the_next_step_is_created_running_under_the_finishing_worker(
    app: FastAPI, automations: Automations
) -> None:
    await automations.create([CHAIN[0], {"key": "second", "action": "echo", "depends_on": ["first"]}])
    started = await automations.start()
    run = await automations.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    first, second = (steps_by_key(run)[key]["action_run_ids"][0] for key in ("first", "second"))
    assert (await events(app, first))[0]["to"] == "PENDING"  # created by the API process: queued and claimed
    first_event = (await events(app, second))[0]
    assert first_event == {
        "from": None,
        "to": "RUNNING",
        "origin": "automation",
        "worker": worker_of(app).name,
        "attempt": 1,
    }
    adopted = await action_run(app, second)
    assert (adopted.attempt, adopted.lease_token, adopted.status.value) == (1, 1, "COMPLETED")


async def test_an_adopted_run_is_fenced_by_its_token(app: FastAPI, automations: Automations) -> None:
    await automations.create(CHAIN)
    started = await automations.start()
    second = await started_step(automations, started["id"], "second")
    worker = worker_of(app)
    await steal_adopted_run(app, second)
    events_before = await events(app, second)

    async def dropped() -> bool:
        return second not in worker.in_flight

    # The next heartbeat finds the lease gone; the executor stops the run and its finish changes nothing.
    await until(dropped, "the worker to drop the run", timeout_s=5.0)
    run = await action_run(app, second)
    assert (run.status.value, run.lease_owner, run.lease_token, run.output) == ("RUNNING", "thief", 2, None)
    assert await events(app, second) == events_before
    assert len(worker.in_flight) == 0 and worker._reserved == 0  # the slot is free again


async def test_an_adopted_run_is_cancellable(app: FastAPI, automations: Automations) -> None:
    await automations.create(CHAIN)
    started = await automations.start()
    second = await started_step(automations, started["id"], "second")

    async def running() -> bool:
        return second in worker_of(app).in_flight

    await until(running, "the worker to adopt the run")
    response = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert response.status_code == 200, response.text

    async def cancelled() -> ActionRun | None:
        run = await action_run(app, second)
        return run if run.status.value == "CANCELLED" else None

    run = await until(cancelled, "the adopted run to stop", timeout_s=5.0)
    assert run.error is not None and run.error["type"] == "Cancelled"  # stopped by the action's cooperation

    async def left_the_worker() -> bool:  # its outcome is committed a moment before its task ends
        return second not in worker_of(app).in_flight

    await until(left_the_worker, "the worker to let the run go", timeout_s=5.0)


async def test_the_organization_limit_and_approvals_keep_runs_out_of_the_handoff(
    app: FastAPI, automations: Automations
) -> None:
    # per_org_concurrency is 1: of the two steps ready together only one may run; the write step needs approval.
    await automations.create(
        [
            CHAIN[0],
            {"key": "a", "action": "sleep", "inputs": {"seconds": 30}, "depends_on": ["first"]},
            {"key": "b", "action": "sleep", "inputs": {"seconds": 30}, "depends_on": ["first"]},
            {"key": "w", "action": "test_write", "inputs": {"value": "x"}, "depends_on": ["first"]},
        ]
    )
    started = await automations.start()
    ids = {key: await started_step(automations, started["id"], key) for key in ("a", "b", "w")}
    first_statuses = {key: (await events(app, run_id))[0]["to"] for key, run_id in ids.items()}
    assert first_statuses == {"a": "RUNNING", "b": "PENDING", "w": "AWAITING_APPROVAL"}
    assert (await action_run(app, ids["b"])).status.value == "PENDING"  # the claim respects the limit too
    response = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert response.status_code == 200, response.text
