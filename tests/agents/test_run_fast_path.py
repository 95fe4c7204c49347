"""The fast path for agent runs (``orchestration/fast_path.py`` with ``AgentRuns.sole_child``): a model call's one
tool call, and a tool call's next model call, are created RUNNING under the lease of the worker that finished the
step before, in the transaction that records that finish; a run that moved meanwhile is read again, not taken from
what this process kept.

Seen from outside, through the API: a child the fast path created has as its first status event ``None → RUNNING``
with its ``worker``, where one the general path created is ``None → PENDING`` (and is claimed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.agents.conftest import Agents
from tests.agents.kinds_tools import read_effects
from tests.helpers import eventually, parse_sse
from tests.llm.fake_providers import Turn
from virtuousai.agents.tables import AgentRun, AgentRunEvent
from virtuousai.config import Settings
from virtuousai.ids import new_id
from virtuousai.timeutil import utcnow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No sweep during a test: an advance of the run under way in this process makes the fast path step aside.
    return settings.model_copy(update={"automation_sweep_interval_s": 3600.0})


async def status_events(agents: Agents, action_run_id: str) -> list[dict[str, Any]]:
    response = await agents.client.get(f"/api/v1/action-runs/{action_run_id}/events", headers=agents.org.headers)
    assert response.status_code == 200, response.text
    events = [json.loads(event["data"]) for event in parse_sse(response.text)]
    return [event["data"] for event in events if event["kind"] == "status"]


async def first_move_and_worker(agents: Agents, action_run_id: str) -> tuple[tuple[str | None, str], str]:
    """An ActionRun's first status move, and the worker that ran it (its RUNNING event's lease)."""
    moves = await status_events(agents, action_run_id)
    (running,) = [move for move in moves if move["to"] == "RUNNING"]
    return (moves[0]["from"], moves[0]["to"]), running["worker"]


def three_lookups() -> list[Turn]:
    return [
        Turn(tool_calls=[("agent_lookup", {"q": "orders"})]),
        Turn(tool_calls=[("agent_lookup", {"q": "refunds"})]),
        Turn(tool_calls=[("agent_lookup", {"q": "returns"})]),
        Turn(text="42 orders, 3 refunds, 1 return."),
    ]


async def test_each_next_step_goes_to_the_worker_that_finished_the_one_before(agents: Agents, effects: Path) -> None:
    tag = await agents.llm(three_lookups())
    await agents.spec("analyst")
    run = await agents.wait((await agents.start("analyst", "How did yesterday go?"))["id"])

    assert run["status"] == "COMPLETED", run
    assert run["output"] == "42 orders, 3 refunds, 1 return."
    assert (run["tool_calls"], run["model_calls"]) == (3, 4)
    assert sorted(e["q"] for e in read_effects(effects)) == ["orders", "refunds", "returns"]
    requests = agents.fake.requests_for(tag)
    assert [len(r.tool_results) for r in requests] == [0, 1, 2, 3]  # each result reached the model, once

    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["status"]) for s in steps] == [("model", "COMPLETED"), ("tool", "COMPLETED")] * 3 + [
        ("model", "COMPLETED")
    ]
    children = [s["action_run_id"] for s in steps]
    first, worker = await first_move_and_worker(agents, children[0])
    assert first == (None, "PENDING")  # the first model call is claimed
    for action_run_id in children[1:]:
        first, next_worker = await first_move_and_worker(agents, action_run_id)
        assert first == (None, "RUNNING"), action_run_id
        assert next_worker == worker  # handed over in the slot the step before freed

    kinds = [e["event"] for e in await agents.events(run["id"]) if e["event"] != "narration"]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert kinds.count("step_started") == kinds.count("step_completed") == 7


@pytest.mark.agent_settings(orchestration_fast_path=False)
async def test_without_the_fast_path_every_child_is_claimed(agents: Agents) -> None:
    await agents.llm(three_lookups())
    await agents.spec("analyst")
    run = await agents.wait((await agents.start("analyst", "How did yesterday go?"))["id"])
    assert run["status"] == "COMPLETED", run
    for step in await agents.steps(run["id"]):
        first, _ = await first_move_and_worker(agents, step["action_run_id"])
        assert first == (None, "PENDING")


async def test_a_run_that_moved_while_a_tool_ran_is_read_again_and_makes_each_call_once(
    agents: Agents, app: FastAPI, effects: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    tag = await agents.llm(
        [
            Turn(tool_calls=[("agent_lookup", {"q": "orders", "wait_for": str(release)})]),
            Turn(tool_calls=[("agent_lookup", {"q": "refunds"})]),
            Turn(text="Done."),
        ]
    )
    await agents.spec("analyst")
    started = await agents.start("analyst", "How did yesterday go?")
    await eventually(lambda: effects.with_suffix(".started").exists(), what="the first tool call to start")
    # Another process's pass of the run, as it would write it: one more event, and the version with it. This
    # process's kept state of the run is now behind: the finish must take the general path.
    async with app.state.sessions() as session:
        seq = await session.scalar(
            sa.update(AgentRun)
            .where(AgentRun.id == started["id"])
            .values(last_event_seq=AgentRun.last_event_seq + 1)
            .returning(AgentRun.last_event_seq)
        )
        event = {"id": new_id("agevt"), "tenant_id": agents.org.org_id, "agent_run_id": started["id"], "seq": seq}
        event |= {"kind": "note", "data": {"note": "elsewhere"}, "created_at": utcnow()}
        await session.execute(sa.insert(AgentRunEvent).values(**event))
        await session.commit()
    release.touch()

    run = await agents.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    assert [e["q"] for e in read_effects(effects)] == ["orders", "refunds"]  # each call made once
    assert [len(r.tool_results) for r in agents.fake.requests_for(tag)] == [0, 1, 2]
    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["status"]) for s in steps] == [
        ("model", "COMPLETED"),
        ("tool", "COMPLETED"),
        ("model", "COMPLETED"),
        ("tool", "COMPLETED"),
        ("model", "COMPLETED"),
    ]
    # The pass that took the tool call's finish read the run again (its kept state was behind) and still handed
    # the next model call over: guarded by the version it read, not the one it had kept.
    for step in steps[1:]:
        first, _ = await first_move_and_worker(agents, step["action_run_id"])
        assert first == (None, "RUNNING")
    kinds = [e["event"] for e in await agents.events(run["id"]) if e["event"] != "narration"]
    assert kinds.count("note") == 1 and kinds.count("step_started") == kinds.count("step_completed") == 5


async def test_a_decision_made_during_another_pass_answers_with_the_pass_it_asked_for(
    agents: Agents, app: FastAPI, effects: Path
) -> None:
    """A fast path's pass of the run under way here (``Orchestrator.hold``, as a worker finishing a call takes it)
    while a human approves: the approval's pass waits for it, runs next, and the answer shows what it did."""
    await agents.llm([Turn(tool_calls=[("agent_send", {"to": "ops@example.com", "text": "Hi."})]), Turn(text="Sent.")])
    await agents.spec("notifier", tools=("agent_send",))
    run = await agents.start("notifier", "Tell ops.", wait=10)
    assert run["status"] == "AWAITING_APPROVAL", run

    orchestrator = app.state.orchestrator
    held = orchestrator.hold(run["id"])
    assert held is not None and orchestrator.hold(run["id"]) is None  # one advance of a run at a time here
    approving = asyncio.create_task(agents.call("POST", f"/api/v1/agents/runs/{run['id']}/approve", json={}))
    # The approval is written and asks for one more pass, which waits for the one under way ...
    await eventually(lambda: orchestrator.running.get(run["id"]) is True, what="the approval to ask for its pass")
    assert not approving.done()
    await orchestrator.release(agents.org.org_id, run["id"], held)
    # ... and the answer comes once that pass ran: the call is no longer waiting.
    approved = await approving
    assert approved["status"] in ("RUNNING", "COMPLETED") and approved["pending_approvals"] == []
    done = await agents.wait(run["id"])
    assert (done["status"], done["output"]) == ("COMPLETED", "Sent.")
    assert [e["to"] for e in read_effects(effects)] == ["ops@example.com"]
