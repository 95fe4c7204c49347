"""Agent runs end to end (seeds/002): the loop on the workers, its steps, events, DAG, usage and stats — through the
API, with the real SDK clients against the loopback server speaking the OpenAI and Anthropic wire formats."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.agents.conftest import CALL_COST, Agents
from tests.agents.kinds_tools import read_effects
from tests.llm.fake_providers import Turn
from virtuousai.config import Settings
from virtuousai.process import build_orchestrator
from virtuousai.store.engine import make_engine, make_sessionmaker


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_three_tool_run_end_to_end(agents: Agents, effects: Path, api: str) -> None:
    tag = await agents.llm(
        [
            Turn(tool_calls=[("agent_lookup", {"q": "orders"}), ("agent_lookup", {"q": "refunds"})]),
            Turn(text="Let me check one more thing.", tool_calls=[("agent_lookup", {"q": "returns"})]),
            Turn(text="There were 42 orders, 3 refunds and 1 return."),
        ],
        api=api,
    )
    spec = await agents.spec("analyst")
    started = await agents.start("analyst", "How did yesterday go?")
    assert started["spec_id"] == spec["id"] and started["spec_version"] == 1
    run = await agents.wait(started["id"])

    assert run["status"] == "COMPLETED", run
    assert run["output"] == "There were 42 orders, 3 refunds and 1 return."
    assert (run["tool_calls"], run["model_calls"]) == (3, 3)
    assert (run["input_tokens"], run["output_tokens"]) == (36, 21)
    assert Decimal(run["cost"]) == 3 * Decimal(CALL_COST) and run["cost_unknown"] is False

    # Every tool ran once, and each result reached the model once.
    assert sorted(e["q"] for e in read_effects(effects)) == ["orders", "refunds", "returns"]
    requests = agents.fake.requests_for(tag)
    assert len(requests) == 3
    last = requests[-1]
    assert len(last.tool_results) == 3
    assert all(sum(1 for r in last.tool_results if q in r) == 1 for q in ("orders", "refunds", "returns"))
    assert set(requests[0].tool_names) == {"agent_lookup"}

    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["status"], s["tool"]) for s in steps] == [
        ("model", "COMPLETED", None),
        ("tool", "COMPLETED", "agent_lookup"),
        ("tool", "COMPLETED", "agent_lookup"),
        ("model", "COMPLETED", None),
        ("tool", "COMPLETED", "agent_lookup"),
        ("model", "COMPLETED", None),
    ]
    ids = [s["id"] for s in steps]
    dag = await agents.call("GET", f"/api/v1/agents/runs/{run['id']}/dag")
    edges = {(e["source"], e["target"]) for e in dag["edges"]}
    assert edges == {
        (ids[0], ids[1]),
        (ids[0], ids[2]),
        (ids[1], ids[3]),
        (ids[2], ids[3]),
        (ids[3], ids[4]),
        (ids[4], ids[5]),
    }
    assert dag["mermaid"].startswith("flowchart TD") and "s0 --> s1" in dag["mermaid"]
    # Each tool step names its ActionRun: origin agent, the run as its parent, the tool's kind.
    action = await agents.call("GET", f"/api/v1/action-runs/{steps[1]['action_run_id']}")
    assert (action["kind"], action["origin"], action["agent_run_id"]) == ("agent_lookup", "agent", run["id"])

    events = await agents.events(run["id"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert kinds.count("step_started") == 6 and kinds.count("step_completed") == 6
    assert "narration" in kinds and kinds.index("narration") > kinds.index("step_started")
    narrated = "".join(e["data"]["text"] for e in events if e["event"] == "narration")
    assert narrated == "Let me check one more thing.There were 42 orders, 3 refunds and 1 return."
    for event in events:
        assert event["data"]["run_id"] == run["id"]
        if event["event"].startswith("step_"):
            assert {"step_id", "tool", "action_run_id", "status"} <= set(event["data"])
    # Resumable: after any id, the rest of the stream exactly.
    middle = events[len(events) // 2]["id"]
    resumed = await agents.events(run["id"], last_event_id=middle)
    assert [e["id"] for e in resumed] == [e["id"] for e in events[len(events) // 2 + 1 :]]

    stats = await agents.call("GET", f"/api/v1/agents/specs/{spec['id']}/stats")
    assert (stats["total_runs"], stats["success_rate"]) == (1, 1.0) and stats["avg_duration_ms"] > 0
    await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/feedback", json={"rating": "down"})
    await agents.call("POST", f"/api/v1/agents/runs/{run['id']}/feedback", json={"rating": "up", "comment": "ok"})
    stats = await agents.call("GET", f"/api/v1/agents/specs/{spec['id']}/stats")
    assert (stats["feedback_up"], stats["feedback_down"]) == (1, 0)


async def test_the_run_starts_with_the_instructions_and_the_context(agents: Agents) -> None:
    tag = await agents.llm([Turn(text="Hello, Ada.")])
    await agents.spec("greeter", tools=(), instructions="# Role\n\nYou greet people by name.")
    run = await agents.start("greeter", "Say hello.", context={"user": "Ada", "timezone": "Europe/Paris"}, wait=10)
    assert run["status"] == "COMPLETED" and run["output"] == "Hello, Ada."
    [request] = agents.fake.requests_for(tag)
    system = [m["content"] for m in request.body["messages"] if m["role"] == "system"]
    assert system[0] == "# Role\n\nYou greet people by name."
    assert '"user": "Ada"' in system[1] and "Europe/Paris" in system[1]
    assert request.body["messages"][-1] == {"role": "user", "content": "Say hello."}
    assert "tools" not in request.body  # nothing outside the spec is offered


async def test_the_list_filters_and_pages(agents: Agents) -> None:
    await agents.llm(lambda seen: Turn(text="done"))
    await agents.spec("one", tools=())
    await agents.spec("two", tools=())
    first = await agents.start("one", wait=10)
    await agents.start("two", wait=10)
    await agents.start("one", wait=10)
    page = await agents.call("GET", "/api/v1/agents/runs?agent=one&limit=1")
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = await agents.call("GET", f"/api/v1/agents/runs?agent=one&limit=5&cursor={page['next_cursor']}")
    assert [r["id"] for r in rest["items"]] == [first["id"]]
    completed = await agents.call("GET", "/api/v1/agents/runs?status=COMPLETED")
    assert len(completed["items"]) == 3


async def test_a_subagent_spec_may_be_run_directly(agents: Agents) -> None:
    await agents.llm([Turn(text="I am a helper.")])
    await agents.spec("helper", mode="subagent", tools=())
    run = await agents.start("helper", wait=10)
    assert run["status"] == "COMPLETED" and run["depth"] == 0


async def test_runs_are_not_seen_across_organizations(agents: Agents, other_org) -> None:  # type: ignore[no-untyped-def]
    await agents.llm([Turn(text="mine")])
    await agents.spec("private", tools=())
    run = await agents.start("private", wait=10)
    other = {"Authorization": f"Bearer {other_org.api_key}"}
    for path in ("", "/steps", "/dag", "/events"):
        response = await agents.client.get(f"/api/v1/agents/runs/{run['id']}{path}", headers=other)
        assert response.status_code == 404, (path, response.text)
    response = await agents.client.post(f"/api/v1/agents/runs/{run['id']}/cancel", headers=other)
    assert response.status_code == 404
    listed = await agents.client.get("/api/v1/agents/runs", headers=other)
    assert listed.json()["items"] == []
    response = await agents.client.post("/api/v1/agents/runs", headers=other, json={"agent": "private", "input": "x"})
    assert response.status_code == 404


async def test_passes_of_three_processes_at_once_move_the_run_once(
    agents: Agents, app: FastAPI, settings: Settings, effects: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two more processes' orchestrators advance the run at the same moments as the app's: a pass that loses the
    race (on PostgreSQL, a unique key of the rows the winner wrote) reads the run again; nothing is logged as failed,
    and every step is made once."""
    await agents.llm([Turn(tool_calls=[("agent_lookup", {"q": "orders"})]), Turn(text="42.")])
    await agents.spec("analyst")
    started = await agents.start("analyst", "How many?")
    others = [make_engine(settings.resolved_database_url) for _ in range(2)]
    try:
        orchestrators = [build_orchestrator(make_sessionmaker(e), app.state.registry, settings) for e in others]
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                await asyncio.gather(*(o.advance(agents.org.org_id, started["id"]) for o in orchestrators))
            run = await agents.wait(started["id"])
    finally:
        for engine in others:
            await engine.dispose()
    assert run["status"] == "COMPLETED", run
    assert (run["tool_calls"], run["model_calls"]) == (1, 2)
    assert [e["q"] for e in read_effects(effects)] == ["orders"]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("virtuousai.orchestration")] == []
