"""Delegation (seeds/002 "Delegation Rules"): ``call_agent(agent, question)`` runs a child AgentRun — only a slug of
the caller's ``sub_agents``, never itself, never from a subagent, no deeper than ``VAI_AGENT_MAX_DEPTH``. The
child's answer is the tool result; cancelling the caller cancels it; an approval it needs surfaces on the caller."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tests.agents.conftest import CALL_COST, Agents
from tests.agents.kinds_tools import read_effects
from tests.llm.fake_providers import SeenRequest, Turn


def by_agent(**scripts: list[Turn]) -> Callable[[SeenRequest], Turn]:
    """One model for every agent of the test: the turn list of the agent whose instructions the request carries
    (each spec's instructions name it), the turn by how far that conversation got."""

    def answer(seen: SeenRequest) -> Turn:
        system = " ".join(str(m.get("content")) for m in seen.body.get("messages", []) if m.get("role") == "system")
        for slug, turns in scripts.items():
            if f"I am {slug}." in system:
                return turns[min(seen.turn, len(turns) - 1)]
        raise AssertionError(f"no script for {system!r}")

    return answer


async def specs(agents: Agents, **sub_agents: tuple[str, ...]) -> None:
    """Specs named by the keyword; the value is its sub_agents (a spec with none is a subagent)."""
    for slug in sorted(sub_agents, key=lambda s: len(sub_agents[s])):
        subs = sub_agents[slug]
        await agents.spec(
            slug,
            mode="primary" if subs else "subagent",
            tools=("call_agent", "agent_lookup", "agent_send") if subs else ("agent_lookup", "agent_send"),
            sub_agents=subs,
            instructions=f"I am {slug}.",
        )


def call(agent: str, question: str = "What do you know?") -> tuple[str, dict[str, str]]:
    return ("call_agent", {"agent": agent, "question": question})


async def test_a_delegated_run_answers_its_caller(agents: Agents) -> None:
    tag = await agents.llm(
        by_agent(
            boss=[Turn(tool_calls=[call("researcher", "Find the figure.")]), Turn(text="The researcher says 7.")],
            researcher=[Turn(text="The figure is 7.")],
        )
    )
    await specs(agents, researcher=(), boss=("researcher",))
    run = await agents.wait((await agents.start("boss"))["id"])
    assert run["status"] == "COMPLETED" and run["output"] == "The researcher says 7."
    steps = await agents.steps(run["id"])
    delegation = steps[1]
    assert (delegation["kind"], delegation["status"], delegation["result"]["content"]) == (
        "delegation",
        "COMPLETED",
        "The figure is 7.",
    )
    child = await agents.get(delegation["child_run_id"])
    assert (child["parent_run_id"], child["depth"], child["input"]) == (run["id"], 1, "Find the figure.")
    # The caller's cost includes the child's; the child's is its own.
    assert Decimal(child["cost"]) == Decimal(CALL_COST)
    assert Decimal(run["cost"]) == 3 * Decimal(CALL_COST)
    listed = await agents.call("GET", f"/api/v1/agents/runs?parent_run_id={run['id']}")
    assert [r["id"] for r in listed["items"]] == [child["id"]]
    # Only the primary agent was offered call_agent.
    offered = {tuple(sorted(r.tool_names)) for r in agents.fake.requests_for(tag)}
    assert ("agent_lookup", "agent_send", "call_agent") in offered
    assert ("agent_lookup", "agent_send") in offered  # the researcher's requests


async def test_delegation_outside_the_rules_is_refused(agents: Agents) -> None:
    await agents.llm(
        by_agent(
            boss=[
                Turn(tool_calls=[call("stranger"), call("boss")]),
                Turn(text="Nobody could help."),
            ],
            researcher=[Turn(text="unused")],
        )
    )
    await specs(agents, researcher=(), boss=("researcher",))
    await agents.spec("stranger", mode="subagent", tools=(), instructions="I am stranger.")
    run = await agents.wait((await agents.start("boss"))["id"])
    assert run["status"] == "COMPLETED"
    refused = [s for s in await agents.steps(run["id"]) if s["kind"] == "delegation"]
    assert [(s["status"], s["error"]["type"]) for s in refused] == [("REFUSED", "delegation_refused")] * 2
    assert "not one of this agent's sub_agents" in refused[0]["error"]["message"]
    assert "cannot call itself" in refused[1]["error"]["message"]
    assert refused[0]["child_run_id"] is None and run["tool_calls"] == 0


async def test_a_subagent_cannot_delegate(agents: Agents) -> None:
    # A subagent's spec cannot list call_agent (the spec check); a model that calls it anyway is refused here.
    tag = await agents.llm(by_agent(helper=[Turn(tool_calls=[call("boss")]), Turn(text="I answer myself.")]))
    await agents.spec("helper", mode="subagent", tools=("agent_lookup",), instructions="I am helper.")
    run = await agents.wait((await agents.start("helper"))["id"])
    assert run["status"] == "COMPLETED"
    [_, refused, _] = await agents.steps(run["id"])
    assert (refused["status"], refused["error"]["type"]) == ("REFUSED", "delegation_refused")
    assert "subagent cannot delegate" in refused["error"]["message"]
    assert all("call_agent" not in r.tool_names for r in agents.fake.requests_for(tag))


@pytest.mark.agent_settings(agent_max_depth=1)
async def test_the_depth_guard(agents: Agents) -> None:
    await agents.llm(
        by_agent(
            top=[Turn(tool_calls=[call("middle")]), Turn(text="Top done.")],
            middle=[Turn(tool_calls=[call("bottom")]), Turn(text="Middle could not go deeper.")],
            bottom=[Turn(text="unused")],
        )
    )
    await agents.spec("bottom", mode="subagent", tools=(), instructions="I am bottom.")
    await agents.spec("middle", tools=("call_agent",), sub_agents=("bottom",), instructions="I am middle.")
    await agents.spec("top", tools=("call_agent",), sub_agents=("middle",), instructions="I am top.")
    run = await agents.wait((await agents.start("top"))["id"])
    assert run["status"] == "COMPLETED" and run["output"] == "Top done."
    middle_id = (await agents.steps(run["id"]))[1]["child_run_id"]
    middle = await agents.get(middle_id)
    assert middle["output"] == "Middle could not go deeper."
    refused = (await agents.steps(middle_id))[1]
    assert (refused["status"], refused["error"]["type"]) == ("REFUSED", "delegation_refused")
    assert "VAI_AGENT_MAX_DEPTH" in refused["error"]["message"]


async def test_cancelling_the_caller_cancels_the_child(agents: Agents) -> None:
    hold = threading.Event()  # the child's model call never answers until the end of the test
    try:
        await agents.llm(
            by_agent(
                boss=[Turn(tool_calls=[call("researcher")]), Turn(text="unused")],
                researcher=[Turn(text="too late", hold=hold)],
            )
        )
        await specs(agents, researcher=(), boss=("researcher",))
        started = await agents.start("boss")

        run = await agents.wait(started["id"], until=lambda r: r["tool_calls"] == 1)
        child_id = (await agents.steps(run["id"]))[1]["child_run_id"]
        await agents.wait(child_id, until=lambda r: r["status"] == "RUNNING" and r["model_calls"] == 0)
        cancelled = await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/cancel")
        assert (cancelled["status"], cancelled["reason"]) == ("CANCELLED", "cancelled")
        child = await agents.wait(child_id)
        assert (child["status"], child["reason"]) == ("CANCELLED", "cancelled")
        [model] = await agents.steps(child_id)
        action = await agents.wait_action(model["action_run_id"])
        assert action["status"] == "CANCELLED"
    finally:
        hold.set()


async def test_a_childs_approval_surfaces_on_the_caller(agents: Agents, effects: Path) -> None:
    send = ("agent_send", {"to": "ops@example.com", "text": "From the researcher."})
    await agents.llm(
        by_agent(
            boss=[Turn(tool_calls=[call("researcher")]), Turn(text="Done: the researcher sent it.")],
            researcher=[Turn(tool_calls=[send]), Turn(text="Sent.")],
        )
    )
    await specs(agents, researcher=(), boss=("researcher",))
    run = await agents.wait((await agents.start("boss"))["id"], until=lambda r: r["status"] == "AWAITING_APPROVAL")
    [waiting] = run["pending_approvals"]
    child_id = (await agents.steps(run["id"]))[1]["child_run_id"]
    assert (waiting["agent_run_id"], waiting["tool"]) == (child_id, "agent_send")

    await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/approve", json={"step_id": waiting["step_id"]})
    done = await agents.wait(run["id"])
    assert done["status"] == "COMPLETED" and done["output"] == "Done: the researcher sent it."
    assert [e["to"] for e in read_effects(effects)] == ["ops@example.com"]
    events = await agents.events(run["id"])
    [surfaced] = [e["data"] for e in events if e["event"] == "approval_required"]
    assert (surfaced["via_run_id"], surfaced["tool"], surfaced["step_id"]) == (
        child_id,
        "agent_send",
        waiting["step_id"],
    )


async def test_a_delegated_runs_cost_stops_its_caller(agents: Agents) -> None:
    await agents.llm(
        by_agent(
            boss=[Turn(tool_calls=[call("researcher")]), Turn(text="unused")],
            researcher=[Turn(tool_calls=[("agent_lookup", {"q": "a"})]), Turn(text="unused")],
        )
    )
    await specs(agents, researcher=(), boss=("researcher",))
    await agents.spec(
        "thrifty",
        tools=("call_agent",),
        sub_agents=("researcher",),
        permissions={"max_cost_per_run": 0.04},
        instructions="I am boss.",
    )
    run = await agents.wait((await agents.start("thrifty"))["id"])
    # 0.026 spent; the child may spend 0.014 and spends 0.026 in its first call: it stops, and so does the caller.
    assert (run["status"], run["reason"]) == ("FAILED", "budget_exceeded"), run
    child = await agents.get((await agents.steps(run["id"]))[1]["child_run_id"])
    assert (child["status"], child["reason"], child["budget"]) == ("FAILED", "budget_exceeded", "0.014")
    assert Decimal(run["cost"]) == 2 * Decimal(CALL_COST)
