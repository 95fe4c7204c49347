"""Budgets, enforced in the runtime (seed 001 "Settings and Limits", seed 002 "Permissions"): the tool call limit,
the wall-clock limit of RUNNING time, the cost budget (every attempt counted, an unknown price stopping a budgeted
run), and the permissions a tool call is checked against before anything runs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.agents.conftest import CALL_COST, Agents
from tests.agents.kinds_tools import read_effects
from tests.helpers import eventually
from tests.llm.fake_providers import SeenRequest, Turn


def always_lookup(seen: SeenRequest) -> Turn:
    return Turn(tool_calls=[("agent_lookup", {"q": f"item {seen.turn}"})])


async def test_the_51st_tool_call_is_refused(agents: Agents, effects: Path) -> None:
    await agents.llm(always_lookup)
    await agents.spec("looper")
    run = await agents.wait((await agents.start("looper"))["id"], timeout_s=120)
    assert (run["status"], run["reason"]) == ("FAILED", "tool_call_limit"), run
    assert run["tool_calls"] == 50 and "VAI_AGENT_MAX_TOOL_CALLS" in run["detail"]
    assert len(read_effects(effects)) == 50  # the 51st never ran
    steps = await agents.steps(run["id"])
    assert sum(1 for s in steps if s["kind"] == "tool") == 50


@pytest.mark.agent_settings(agent_timeout_s=1.5)
async def test_the_wall_clock_limit_cancels_the_tool_in_flight(agents: Agents) -> None:
    await agents.llm([Turn(tool_calls=[("agent_slow", {"seconds": 30})]), Turn(text="never")])
    await agents.spec("slowpoke", tools=("agent_slow",))
    run = await agents.wait((await agents.start("slowpoke"))["id"])
    assert (run["status"], run["reason"]) == ("FAILED", "timeout"), run
    # Ended at its limit, not when a child next ended or the sweep came by (a tool's timeout is what the run has
    # left, and its attempts are retried: it ran 4.8 s of a 1.5 s limit when only a child's end could end it).
    assert 1.5 <= run["running_s"] < 2.5, run
    steps = await agents.steps(run["id"])
    tool = next(s for s in steps if s["kind"] == "tool")

    async def stopped() -> dict[str, Any] | None:
        action: dict[str, Any] = await agents.call("GET", f"/api/v1/action-runs/{tool['action_run_id']}")
        return action if action["status"] in ("FAILED", "CANCELLED") else None

    action = await eventually(stopped, what="the tool in flight to stop")
    assert action["status"] == "CANCELLED", action
    assert action["timeout_s"] <= 1.5  # its own timeout was what the run had left


async def test_the_budget_stops_the_next_model_call(agents: Agents) -> None:
    await agents.llm(always_lookup)
    await agents.spec("spender", permissions={"max_cost_per_run": 0.05})
    run = await agents.wait((await agents.start("spender"))["id"])
    # 0.026 after one call (under 0.05): a second call; 0.052 after it: no third.
    assert (run["status"], run["reason"]) == ("FAILED", "budget_exceeded"), run
    assert Decimal(run["cost"]) == 2 * Decimal(CALL_COST) and run["model_calls"] == 2
    assert run["budget"] == "0.05"


async def test_failed_attempts_count_against_the_budget(agents: Agents) -> None:
    """The chain's first member fails after being charged nothing, the second answers: both attempts are recorded;
    a failing provider that reports usage would count the same way (every attempt's cost is summed)."""
    await agents.llm([Turn(status=500)] * 3, order=1)
    await agents.llm([Turn(text="From the fallback.")], order=2)
    await agents.spec("fallback", tools=(), permissions={"max_cost_per_run": 1})
    run = await agents.wait((await agents.start("fallback"))["id"])
    assert run["status"] == "COMPLETED" and run["output"] == "From the fallback."
    [model] = await agents.steps(run["id"])
    action = await agents.call("GET", f"/api/v1/action-runs/{model['action_run_id']}")
    attempts = action["output"]["attempts"]
    assert [a["fell_back"] for a in attempts] == [True, False]
    assert Decimal(run["cost"]) == Decimal(CALL_COST)


async def test_an_unknown_price_stops_a_budgeted_run(agents: Agents) -> None:
    await agents.llm(always_lookup, priced=False)
    await agents.spec("unpriced", permissions={"max_cost_per_run": 1})
    run = await agents.wait((await agents.start("unpriced"))["id"])
    assert (run["status"], run["reason"]) == ("FAILED", "cost_unknown"), run
    assert run["cost_unknown"] is True and run["model_calls"] == 1


async def test_an_unknown_price_without_a_budget_is_reported_not_zero(agents: Agents) -> None:
    await agents.llm([Turn(text="fine")], priced=False)
    await agents.spec("free", tools=())
    run = await agents.wait((await agents.start("free"))["id"])
    assert run["status"] == "COMPLETED" and run["cost_unknown"] is True


async def test_permissions_refuse_a_call_before_it_runs(agents: Agents, effects: Path) -> None:
    tag = await agents.llm(
        [
            Turn(tool_calls=[("agent_lookup", {"q": "secrets", "connection": "slug:warehouse"})]),
            Turn(tool_calls=[("agent_lookup", {"q": "sales", "connection": "slug:analytics"})]),
            Turn(text="Done within my permissions."),
        ]
    )
    for slug in ("analytics", "warehouse"):
        body = {"provider": "http_api", "name": slug, "slug": slug, "config": {"base_url": f"https://{slug}.example"}}
        await agents.call("POST", "/api/v1/connections", 201, json=body | {"secrets": {"token": "t"}})
    await agents.spec("scoped", permissions={"allowed_connections": ["analytics"]})
    run = await agents.wait((await agents.start("scoped"))["id"])
    assert run["status"] == "COMPLETED", run
    steps = await agents.steps(run["id"])
    refused = steps[1]
    assert (refused["status"], refused["error"]["type"], refused["action_run_id"]) == ("REFUSED", "not_allowed", None)
    assert [e["q"] for e in read_effects(effects)] == ["sales"]
    # The model was told why, as the call's result.
    assert any("may not use connection" in r for r in agents.fake.requests_for(tag)[1].tool_results)


async def test_allowed_actions_limit_the_kinds_a_run_may_start(agents: Agents, effects: Path) -> None:
    await agents.llm([Turn(tool_calls=[("agent_lookup", {"q": "x"})]), Turn(text="ok")])
    await agents.spec("narrow", permissions={"allowed_actions": ["agent_send"]}, tools=("agent_lookup", "agent_send"))
    run = await agents.wait((await agents.start("narrow"))["id"])
    assert run["status"] == "COMPLETED"
    assert [s["status"] for s in await agents.steps(run["id"])] == ["COMPLETED", "REFUSED", "COMPLETED"]
    assert read_effects(effects) == []
