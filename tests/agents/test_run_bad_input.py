"""Bad input, from the caller or from the model: each a clear error or a retry prompt — never a 500, never a stuck
run, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.conftest import Agents
from tests.agents.kinds_tools import read_effects
from tests.llm.fake_providers import SeenRequest, Turn


async def test_an_unknown_agent_is_404_and_creates_nothing(agents: Agents) -> None:
    for agent in ("nobody", "slug:nobody", "agt_01JD3Q0000000000000000000A"):
        response = await agents.client.post(
            "/api/v1/agents/runs", headers=agents.org.headers, json={"agent": agent, "input": "hi"}
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await agents.call("GET", "/api/v1/agents/runs"))["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"agent": "a", "input": ""}, ["body", "input"]),
        ({"agent": "a", "input": "   \n"}, ["body", "input"]),
        ({"agent": "a"}, ["body", "input"]),
        ({"input": "hi"}, ["body", "agent"]),
        ({"agent": "a", "input": "hi", "context": "not an object"}, ["body", "context"]),
        ({"agent": "a", "input": "hi", "extra": 1}, ["body", "extra"]),
    ],
)
async def test_bad_requests_are_422_with_the_field(agents: Agents, body: dict[str, object], loc: list[str]) -> None:
    await agents.spec("a", tools=())
    response = await agents.client.post("/api/v1/agents/runs", headers=agents.org.headers, json=body)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["errors"]]
    assert (await agents.call("GET", "/api/v1/agents/runs"))["items"] == []


async def test_a_tool_the_model_invents_gets_a_retry_prompt(agents: Agents, effects: Path) -> None:
    tag = await agents.llm(
        [
            Turn(tool_calls=[("drop_tables", {"all": True})]),
            Turn(tool_calls=[("agent_lookup", {"q": "the real question"})]),
            Turn(text="Found it."),
        ]
    )
    await agents.spec("inventive")
    run = await agents.wait((await agents.start("inventive"))["id"])
    assert run["status"] == "COMPLETED" and run["output"] == "Found it."
    steps = await agents.steps(run["id"])
    invented = steps[1]
    assert (invented["status"], invented["error"]["type"], invented["action_run_id"]) == (
        "REFUSED",
        "unknown_tool",
        None,
    )
    assert run["tool_calls"] == 1 and run["model_calls"] == 3  # the retry cost a model call, not a tool run
    retry = agents.fake.requests_for(tag)[1]
    assert any("unknown tool 'drop_tables'" in r and "agent_lookup" in r for r in retry.tool_results)
    assert [e["q"] for e in read_effects(effects)] == ["the real question"]


async def test_arguments_that_do_not_validate_get_a_retry_prompt(agents: Agents, effects: Path) -> None:
    tag = await agents.llm(
        [
            Turn(tool_calls=[("agent_lookup", {"query": "wrong field"})]),
            Turn(tool_calls=[("agent_lookup", '{"q": "unclosed')]),
            Turn(tool_calls=[("agent_lookup", {"q": "right"})]),
            Turn(text="Done."),
        ]
    )
    await agents.spec("sloppy")
    run = await agents.wait((await agents.start("sloppy"))["id"])
    assert run["status"] == "COMPLETED"
    steps = await agents.steps(run["id"])
    assert [s["error"]["type"] for s in steps if s["status"] == "REFUSED"] == ["invalid_arguments"] * 2
    second = agents.fake.requests_for(tag)[1]
    assert any("q" in r and "Field required" in r for r in second.tool_results)
    assert [e["q"] for e in read_effects(effects)] == ["right"]


async def test_three_retries_then_tool_error(agents: Agents, effects: Path) -> None:
    def always_wrong(seen: SeenRequest) -> Turn:
        return Turn(tool_calls=[("made_up", {})])

    tag = await agents.llm(always_wrong)
    await agents.spec("stubborn")
    run = await agents.wait((await agents.start("stubborn"))["id"])
    assert (run["status"], run["reason"]) == ("FAILED", "tool_error"), run
    # The first answer and 3 retries: 4 model calls, no tool run.
    assert len(agents.fake.requests_for(tag)) == 4 and run["tool_calls"] == 0
    assert read_effects(effects) == []


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_provider_that_returns_malformed_json_fails_the_run_clearly(agents: Agents, api: str) -> None:
    tag = f"broken-{api}"
    base = (
        agents.fake.anthropic_base_url(tag, "malformed")
        if api == "anthropic"
        else agents.fake.openai_base_url(tag, "malformed")
    )
    config = {"base_url": base, "models": ["m"], "prices": {"*": {"input_per_mtok": 1, "output_per_mtok": 1}}}
    body = {"provider": api, "name": tag, "slug": tag, "config": config, "secrets": {"api_key": "sk-test"}}
    await agents.call("POST", "/api/v1/connections", 201, json=body)
    await agents.spec("victim", tools=())
    run = await agents.wait((await agents.start("victim"))["id"])
    assert (run["status"], run["reason"]) == ("FAILED", "model_error"), run
    assert run["detail"]
    [model] = await agents.steps(run["id"])
    assert model["status"] == "FAILED" and model["error"]["type"] == "model_error"


async def test_no_llm_connection_fails_the_run_with_no_model(agents: Agents) -> None:
    await agents.spec("orphan", tools=())
    run = await agents.wait((await agents.start("orphan"))["id"])
    assert (run["status"], run["reason"]) == ("FAILED", "no_model")
    assert "no LLM connection" in run["detail"]


async def test_decisions_on_a_run_that_waits_for_nothing_are_409(agents: Agents) -> None:
    await agents.llm([Turn(text="Nothing to approve.")])
    await agents.spec("plain", tools=())
    run = await agents.start("plain", wait=10)
    for action in ("approve", "reject", "cancel"):
        response = await agents.client.post(f"/api/v1/agents/runs/{run['id']}/{action}", headers=agents.org.headers)
        assert response.status_code == 409, (action, response.text)
    response = await agents.client.post(
        f"/api/v1/agents/runs/{run['id']}/feedback", headers=agents.org.headers, json={"rating": "meh"}
    )
    assert response.status_code == 422
    response = await agents.client.get(
        f"/api/v1/agents/runs/{run['id']}/events", headers={**agents.org.headers, "Last-Event-ID": "x"}
    )
    assert response.status_code == 422


async def test_viewers_read_but_do_not_start(agents: Agents) -> None:
    await agents.llm([Turn(text="hi")])
    await agents.spec("guarded", tools=())
    run = await agents.start("guarded", wait=10)
    created = await agents.call("POST", "/api/v1/api-keys", 201, json={"name": "viewer", "role": "viewer"})
    viewer = {"Authorization": f"Bearer {created['key']}"}
    assert (await agents.client.get(f"/api/v1/agents/runs/{run['id']}", headers=viewer)).status_code == 200
    response = await agents.client.post("/api/v1/agents/runs", headers=viewer, json={"agent": "guarded", "input": "x"})
    assert response.status_code == 403
