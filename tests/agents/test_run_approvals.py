"""Write tools park the run (seeds/002 "Tool Access"): the call's ActionRun waits in AWAITING_APPROVAL, bound to the
hash of its exact arguments; the run is AWAITING_APPROVAL and holds no worker. Approve → the tool runs and the loop
goes on, also after every process was restarted; reject → CANCELLED ``rejected`` (or, ``on_reject: continue``, the
model is told). One decision per call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.agents.conftest import Agents, new_org, serving
from tests.agents.kinds_tools import read_effects
from tests.llm.fake_providers import FakeProviderServer, Turn
from virtuousai.config import Settings

SEND = ("agent_send", {"to": "ops@example.com", "text": "The report is ready."})


async def parked(
    agents: Agents, *, on_reject: str | None = None, turns: list[Turn] | None = None
) -> tuple[dict[str, Any], str]:
    """A run waiting for the approval of its write tool's call, and the tag of its model's requests."""
    tag = await agents.llm(turns or [Turn(tool_calls=[SEND]), Turn(text="Sent.")])
    await agents.spec("notifier", tools=("agent_send", "agent_lookup"), on_reject=on_reject)
    run = await agents.start("notifier", "Tell ops.", wait=10)
    assert run["status"] == "AWAITING_APPROVAL", run
    return run, tag


async def test_a_write_tool_parks_the_run_until_approved(agents: Agents, effects: Path) -> None:
    run, _ = await parked(agents)
    [waiting] = run["pending_approvals"]
    assert (waiting["tool"], waiting["args"], waiting["agent_run_id"]) == ("agent_send", SEND[1], run["id"])
    action = await agents.call("GET", f"/api/v1/action-runs/{waiting['action_run_id']}")
    assert action["status"] == "AWAITING_APPROVAL" and action["inputs_hash"] == waiting["inputs_hash"]
    assert read_effects(effects) == []  # nothing ran

    approved = await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/approve", json={})
    assert approved["status"] in ("RUNNING", "COMPLETED") and approved["pending_approvals"] == []
    done = await agents.wait(run["id"])
    assert done["status"] == "COMPLETED" and done["output"] == "Sent."
    assert [e["tool"] for e in read_effects(effects)] == ["agent_send"]

    kinds = [e["event"] for e in await agents.events(run["id"])]
    assert kinds.index("approval_required") < kinds.index("approval_decided") < kinds.index("run_completed")
    # A second decision on the same call: 409, and nothing changes.
    again = await agents.client.post(f"/api/v1/agents/runs/{run['id']}/approve", headers=agents.org.headers)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_a_rejection_cancels_the_run(agents: Agents, effects: Path) -> None:
    run, _ = await parked(agents)
    rejected = await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/reject", json={"reason": "not today"})
    assert rejected["status"] == "CANCELLED" and rejected["reason"] == "rejected", rejected
    assert read_effects(effects) == []
    for decision in ("approve", "reject"):
        response = await agents.client.post(f"/api/v1/agents/runs/{run['id']}/{decision}", headers=agents.org.headers)
        assert response.status_code == 409, response.text
    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["status"]) for s in steps] == [("model", "COMPLETED"), ("tool", "CANCELLED")]


async def test_on_reject_continue_tells_the_model(agents: Agents, effects: Path) -> None:
    run, tag = await parked(agents, on_reject="continue", turns=[Turn(tool_calls=[SEND]), Turn(text="Understood.")])
    await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/reject", json={"reason": "wrong list"})
    done = await agents.wait(run["id"])
    assert done["status"] == "COMPLETED" and done["output"] == "Understood."
    last = agents.fake.requests_for(tag)[-1]
    assert any("rejected" in result for result in last.tool_results)
    assert read_effects(effects) == []


async def test_two_waiting_calls_are_decided_one_by_one(agents: Agents, effects: Path) -> None:
    second = ("agent_send", {"to": "cfo@example.com", "text": "Numbers attached."})
    run, _ = await parked(agents, turns=[Turn(tool_calls=[SEND, second]), Turn(text="Both handled.")])
    assert len(run["pending_approvals"]) == 2
    response = await agents.client.post(f"/api/v1/agents/runs/{run['id']}/approve", headers=agents.org.headers)
    assert response.status_code == 409 and "step_id" in response.json()["detail"]
    first, other = run["pending_approvals"]
    after = await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/approve", json={"step_id": first["step_id"]})
    # Approving one call approves that call only: the other still waits.
    assert after["status"] == "AWAITING_APPROVAL"
    assert [p["step_id"] for p in after["pending_approvals"]] == [other["step_id"]]
    await agents.wait(run["id"], until=lambda r: len(read_effects(effects)) == 1)
    assert [e["to"] for e in read_effects(effects)] == ["ops@example.com"]
    await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/approve", json={"step_id": other["step_id"]})
    done = await agents.wait(run["id"])
    assert done["status"] == "COMPLETED"
    assert sorted(e["to"] for e in read_effects(effects)) == ["cfo@example.com", "ops@example.com"]


async def test_waiting_time_does_not_count_against_the_timeout(agents: Agents) -> None:
    run, _ = await parked(agents)
    assert run["running_s"] >= 0
    fresh = await agents.get(run["id"])
    # Parked: the clock stopped (no running stretch open), whatever time passes now.
    assert fresh["status"] == "AWAITING_APPROVAL" and fresh["running_s"] == run["running_s"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_parked_run_survives_a_restart_of_everything(
    settings: Settings, fake_llm: FakeProviderServer, effects: Path, decision: str
) -> None:
    """Every process stops while the run waits; a new server with a new worker takes the decision."""
    async with serving(settings) as (app, client):
        org = await new_org(app)
        run, _ = await parked(Agents(client, org, fake_llm))

    async with serving(settings) as (_, client):
        agents = Agents(client, org, fake_llm)
        assert (await agents.get(run["id"]))["status"] == "AWAITING_APPROVAL"
        await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/{decision}", json={})
        done = await agents.wait(run["id"])
        if decision == "approve":
            assert done["status"] == "COMPLETED"
            assert [e["tool"] for e in read_effects(effects)] == ["agent_send"]
        else:
            assert (done["status"], done["reason"]) == ("CANCELLED", "rejected")
            assert read_effects(effects) == []
        response = await client.post(f"/api/v1/agents/runs/{run['id']}/approve", headers=org.headers)
        assert response.status_code == 409
