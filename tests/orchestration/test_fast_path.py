"""The fast path of a chain (``orchestration/fast_path.py``): a child's finish, its parent's next pass and the next
child, RUNNING under the finishing worker's lease, in one transaction — and the general path taking over whenever
one of its guards fails (the parent moved, the child's lease was taken, a cancel request came).

Seen from outside, through the API and the database: a child the fast path created has as its first status event
``None → RUNNING`` with its ``worker``, where one the general path created is ``None → PENDING``."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.automation_fixtures import Automations, steps_by_key
from tests.helpers import eventually
from tests.runtime.kinds_for_tests import Gate
from virtuousai.automations.tables import AutomationRun, AutomationRunEvent
from virtuousai.config import Settings
from virtuousai.ids import new_id
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.timeutil import utcnow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No sweep during a test: an advance of the parent under way in this process makes the fast path step aside.
    return settings.model_copy(update={"automation_sweep_interval_s": 3600.0})


def chain(length: int) -> list[dict[str, Any]]:
    """Steps ``s0 … s{length-1}``, each adding one to the previous one's ``n``."""
    steps: list[dict[str, Any]] = [{"key": "s0", "action": "echo", "inputs": {"n": 1}}]
    for i in range(1, length):
        steps.append({"key": f"s{i}", "action": "echo", "inputs": {"n": f"${{{{ steps.s{i - 1}.output.n + 1 }}}}"}})
    return steps


def needs(key: str, step: dict[str, Any]) -> dict[str, Any]:
    return step | {"depends_on": [key]}


GATE: dict[str, Any] = {"action": "test_gate", "inputs": {"gate": "g"}}
ECHO: dict[str, Any] = {"action": "echo", "inputs": {"n": 1}}


def transitions(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(e["kind"], e["data"].get("step"), e["data"].get("to")) for e in events]


def expected_transitions(steps: int) -> list[tuple[str, str | None, str]]:
    moves = [("step", f"s{i}", to) for i in range(steps) for to in ("RUNNING", "COMPLETED")]
    return [("run", None, "PENDING"), ("run", None, "RUNNING"), *moves, ("run", None, "COMPLETED")]


async def first_status_event(automations: Automations, action_run_id: str) -> dict[str, Any]:
    events = await automations.action_run_events(action_run_id)
    assert events[0]["seq"] == 1 and events[0]["kind"] == "status"
    data: dict[str, Any] = events[0]["data"]
    return data


async def worker_of(automations: Automations, action_run_id: str) -> str:
    """The worker that ran the ActionRun (the lease of its RUNNING event)."""
    events = await automations.action_run_events(action_run_id)
    (running,) = [e["data"] for e in events if e["kind"] == "status" and e["data"]["to"] == "RUNNING"]
    worker: str = running["worker"]
    return worker


async def action_runs_of(app: FastAPI, run_id: str) -> list[ActionRun]:
    async with app.state.sessions() as session:
        rows = (await session.scalars(sa.select(ActionRun).where(ActionRun.parent_run_id == run_id))).all()
        await session.commit()  # ends the read; keeps the objects loaded
    return list(rows)


async def stored_events(app: FastAPI, action_run_id: str, run_id: str) -> tuple[list[Any], list[Any]]:
    """The events of an ActionRun and of its automation run, as stored (their streams end only with the runs)."""
    async with app.state.sessions() as session:
        action_run_events = await session.execute(
            sa.select(ActionRunEvent.seq, ActionRunEvent.kind, ActionRunEvent.data)
            .where(ActionRunEvent.run_id == action_run_id)
            .order_by(ActionRunEvent.seq)
        )
        run_events = await session.execute(
            sa.select(AutomationRunEvent.seq, AutomationRunEvent.kind, AutomationRunEvent.data)
            .where(AutomationRunEvent.automation_run_id == run_id)
            .order_by(AutomationRunEvent.seq)
        )
        found = [tuple(row) for row in action_run_events], [tuple(row) for row in run_events]
        await session.rollback()
    return found


async def test_a_chain_hands_each_next_step_to_the_worker_that_finished_the_one_before(
    automations: Automations,
) -> None:
    await automations.create(chain(6))
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "COMPLETED", run
    steps = steps_by_key(run)
    assert [steps[f"s{i}"]["output"] for i in range(6)] == [{"n": i + 1} for i in range(6)]

    events = await automations.events(run["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert transitions(events) == expected_transitions(6)

    ids = [steps[f"s{i}"]["action_run_ids"] for i in range(6)]
    assert all(len(one) == 1 for one in ids)
    assert (await first_status_event(automations, ids[0][0]))["to"] == "PENDING"  # the first step is claimed
    for before, (action_run_id,) in itertools.pairwise(ids):
        first = await first_status_event(automations, action_run_id)
        assert (first["from"], first["to"]) == (None, "RUNNING")
        assert first["worker"] == await worker_of(automations, before[0])


async def test_a_chain_whose_run_moved_while_a_step_ran_still_completes_each_step_once(
    automations: Automations, app: FastAPI, gate: Gate
) -> None:
    await automations.create(
        [
            {"key": "s0", **ECHO},
            needs("s0", {"key": "s1", **GATE}),
            needs("s1", {"key": "s2", **ECHO}),
            needs("s2", {"key": "s3", **ECHO}),
        ]
    )
    started = await automations.start()
    await gate.reached()
    # Another process's pass of the run, as it would write it: one more event, and the counter with it.
    async with app.state.sessions() as session:
        seq = await session.scalar(
            sa.update(AutomationRun)
            .where(AutomationRun.id == started["id"])
            .values(last_event_seq=AutomationRun.last_event_seq + 1)
            .returning(AutomationRun.last_event_seq)
        )
        event = {"id": new_id("aevt"), "tenant_id": automations.org.org_id, "automation_run_id": started["id"]}
        event |= {"seq": seq, "kind": "run", "data": {"note": "another process's pass"}}
        await session.execute(sa.insert(AutomationRunEvent).values(**event))
        await session.commit()
    gate.open()

    run = await automations.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    assert [steps_by_key(run)[f"s{i}"]["status"] for i in range(4)] == ["COMPLETED"] * 4
    action_runs = await action_runs_of(app, run["id"])
    assert sorted(ar.step_key or "" for ar in action_runs) == ["s0", "s1", "s2", "s3"]  # one each ...
    assert [ar.attempt for ar in action_runs] == [1] * 4  # ... and each ran once
    events = await automations.events(run["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"] for e in events if "note" in e["data"]] == [{"note": "another process's pass"}]
    assert transitions([e for e in events if "note" not in e["data"]]) == expected_transitions(4)


async def test_a_child_whose_lease_was_taken_records_nothing_and_moves_nothing(
    automations: Automations, app: FastAPI, gate: Gate
) -> None:
    await automations.create([{"key": "s0", **GATE}, needs("s0", {"key": "s1", **ECHO})])
    started = await automations.start()
    await gate.reached()
    (held,) = await action_runs_of(app, started["id"])
    # Another worker holds the run now (a long lease: the watchdog leaves it alone).
    async with app.state.sessions() as session:
        await session.execute(
            sa.update(ActionRun)
            .where(ActionRun.id == held.id)
            .values(
                lease_token=ActionRun.lease_token + 1,
                lease_owner="another-worker",
                lease_expires_at=utcnow() + timedelta(hours=1),
            )
        )
        await session.commit()
    before = await stored_events(app, held.id, started["id"])
    gate.open()
    workers = app.state.runtime.workers
    await eventually(lambda: not any(w.in_flight for w in workers), what="the worker to give the run up")

    action_runs = await action_runs_of(app, started["id"])
    assert [ar.id for ar in action_runs] == [held.id]  # s1 was not created
    assert (action_runs[0].status.value, action_runs[0].lease_owner, action_runs[0].output) == (
        "RUNNING",
        "another-worker",
        None,
    )
    assert await stored_events(app, held.id, started["id"]) == before
    running = await automations.get(started["id"])
    assert (running["status"], [s["status"] for s in running["steps"]]) == ("RUNNING", ["RUNNING", "PENDING"])

    cancelled = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    assert [s["status"] for s in cancelled.json()["steps"]] == ["CANCELLED", "CANCELLED"]


async def test_a_child_with_a_cancel_request_is_recorded_as_cancelled_and_fails_its_run(
    automations: Automations,
) -> None:
    await automations.create(
        [
            {"key": "s0", **ECHO},
            needs("s0", {"key": "s1", "action": "sleep", "inputs": {"seconds": 30}}),
            needs("s1", {"key": "s2", **ECHO}),
        ]
    )
    started = await automations.start()
    running = await automations.wait(started["id"], until=lambda r: steps_by_key(r)["s1"]["action_run_ids"])
    (child,) = steps_by_key(running)["s1"]["action_run_ids"]
    await automations.wait_action_run(child, "RUNNING")
    requested = await automations.client.post(f"/api/v1/action-runs/{child}/cancel", headers=automations.org.headers)
    assert requested.status_code == 200, requested.text

    run = await automations.wait(started["id"])
    steps = steps_by_key(run)
    assert (run["status"], run["error"]["step"]) == ("FAILED", "s1")
    assert [steps[key]["status"] for key in ("s0", "s1", "s2")] == ["COMPLETED", "FAILED", "CANCELLED"]
    assert steps["s1"]["error"]["type"] == "Cancelled"
    child_events = await automations.action_run_events(child)
    assert [(e["kind"], e["data"].get("to")) for e in child_events] == [
        ("status", "RUNNING"),  # created RUNNING by the fast path, with s0's finish
        ("cancel_requested", None),
        ("status", "CANCELLED"),  # recorded although its event counter had moved on
    ]
    events = await automations.events(run["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
