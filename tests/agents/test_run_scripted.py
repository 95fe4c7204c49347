"""The ``scripted`` LLM connection: an agent run played back offline through the API (the demo's way to run an
agent with no provider at all). Each model call is its own ActionRun and builds its own model, so every turn here is
chosen from the conversation the call was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agents.conftest import Agents
from tests.agents.kinds_tools import read_effects


async def scripted(agents: Agents, slug: str, turns: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    body = {"provider": "scripted", "name": slug, "slug": slug, "config": {"turns": turns, **config}, "secrets": {}}
    result: dict[str, Any] = await agents.call("POST", "/api/v1/connections", 201, json=body)
    return result


async def test_a_scripted_connection_is_created_and_tested_through_the_api(agents: Agents) -> None:
    created = await scripted(agents, "script", [{"text": "Hello."}])
    assert created["provider"] == "scripted" and created["secret_fields_set"] == []
    assert created["config"]["models"] == ["scripted"]  # the default model name
    tested = await agents.call("POST", "/api/v1/connections/slug:script/test")
    assert tested["ok"] is True and tested["error"] is None


async def test_an_agent_run_with_a_tool_call_completes_offline(agents: Agents, effects: Path) -> None:
    await scripted(
        agents,
        "script",
        [
            {
                "expect_prompt": "orders",
                "text": "Let me look.",
                "tool_calls": [{"tool": "agent_lookup", "args": {"q": "orders"}}],
            },
            {"text": "There were 42 orders."},
        ],
    )
    await agents.spec("analyst")
    run = await agents.start("analyst", "How many orders yesterday?", wait=20)

    assert run["status"] == "COMPLETED", run
    assert run["output"] == "There were 42 orders."
    assert (run["tool_calls"], run["model_calls"]) == (1, 2)
    assert run["cost"] == "0" and run["cost_unknown"] is False  # offline and free, known to be zero
    assert [e["q"] for e in read_effects(effects)] == ["orders"]
    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["status"], s["tool"]) for s in steps] == [
        ("model", "COMPLETED", None),
        ("tool", "COMPLETED", "agent_lookup"),
        ("model", "COMPLETED", None),
    ]
    narration = [e["data"]["text"] for e in await agents.events(run["id"]) if e["event"] == "narration"]
    assert "".join(narration) == "Let me look.There were 42 orders."


async def test_a_budgeted_run_on_the_scripted_model_is_not_stopped_for_cost(agents: Agents) -> None:
    await scripted(agents, "script", [{"text": "Done."}])
    await agents.spec("budgeted", permissions={"max_cost_per_run": 0.01})
    run = await agents.start("budgeted", wait=20)
    assert (run["status"], run["output"], run["cost"]) == ("COMPLETED", "Done.", "0")


async def test_a_script_that_runs_out_fails_the_run_with_model_error(agents: Agents) -> None:
    await scripted(agents, "script", [{"tool_calls": [{"tool": "agent_lookup", "args": {"q": "x"}}]}])
    await agents.spec("analyst")
    run = await agents.start("analyst", wait=20)
    assert (run["status"], run["reason"]) == ("FAILED", "model_error"), run
    assert "asked for one more" in run["detail"]


async def test_bad_turns_are_a_422_at_their_path_on_create_and_on_update(agents: Agents) -> None:
    bad = {"provider": "scripted", "name": "s", "slug": "bad", "secrets": {}}
    cases = [
        ({"turns": []}, ["body", "config", "turns"]),
        ({"turns": [{"text": "ok"}, {}]}, ["body", "config", "turns", 1]),
        ({"turns": [{"tool_calls": [{"args": {}}]}]}, ["body", "config", "turns", 0, "tool_calls", 0, "tool"]),
        ({"turns": [{"text": "ok", "txt": "typo"}]}, ["body", "config", "turns", 0, "txt"]),
        ({"turns": [{"tool_calls": [{"tool": "t", "args": "not an object"}]}]},
         ["body", "config", "turns", 0, "tool_calls", 0, "args"]),
    ]  # fmt: skip
    for config, loc in cases:
        problem = await agents.call("POST", "/api/v1/connections", 422, json={**bad, "config": config})
        assert loc in [e["loc"] for e in problem["errors"]], (config, problem)
    await scripted(agents, "good", [{"text": "ok"}])
    problem = await agents.call("PATCH", "/api/v1/connections/slug:good", 422, json={"config": {"turns": [{}]}})
    assert ["body", "config", "turns", 0] in [e["loc"] for e in problem["errors"]]
    listed = await agents.call("GET", "/api/v1/connections?provider=scripted")
    assert [c["slug"] for c in listed["items"]] == ["good"]  # nothing bad was stored
