"""The research tools and ``http_request`` end to end: through ``POST /api/v1/action-runs`` and through an agent run
on the scripted model, against loopback servers (a Tavily, pages, an API behind an ``http_api`` connection).

``http_allow_loopback`` is the one setting that lets the tools reach these servers (tests only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agents.conftest import Agents
from tests.net.helpers import RecordedRequest, RecordingServer, Reply, Responder

pytestmark = pytest.mark.agent_settings(http_allow_loopback=True)

ACTION_RUNS = "/api/v1/action-runs"
PAGE = b"""<html><head><title>Quarterly report</title></head><body><article><h1>Quarterly report</h1>
<p>Revenue grew by twelve percent in the third quarter, led by the new storage product line, while costs stayed
flat. The board approved the plan for next year at its October meeting.</p></article></body></html>"""


@pytest.fixture
def servers() -> Iterator[list[RecordingServer]]:
    started: list[RecordingServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[RecordingServer], respond: Responder) -> RecordingServer:
    server = RecordingServer("127.0.0.1", 0, respond)
    servers.append(server)
    return server


def tavily(request: RecordedRequest) -> Reply:
    asked = json.loads(request.body)
    results = [{"title": "Q3 report", "url": "https://example.org/q3", "content": "Revenue grew 12%.", "score": 0.9}]
    body = {"query": asked["query"], "results": results, "response_time": 0.1}
    return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(body).encode())


def page(request: RecordedRequest) -> Reply:
    return Reply(headers={"Content-Type": "text/html; charset=utf-8"}, body=PAGE)


async def connection(agents: Agents, provider: str, slug: str, config: dict[str, Any], secrets: dict[str, str]) -> None:
    """A connection, the organization's default for its provider (so ``provider:<provider>`` names it)."""
    body = {"provider": provider, "name": slug, "slug": slug, "config": config, "secrets": secrets, "is_default": True}
    await agents.call("POST", "/api/v1/connections", 201, json=body)


async def action_run(agents: Agents, kind: str, inputs: dict[str, Any], wait: float = 20) -> dict[str, Any]:
    run: dict[str, Any] = await agents.call(
        "POST", f"{ACTION_RUNS}?wait={wait}", 201, json={"kind": kind, "inputs": inputs}
    )
    return run


# --- through POST /api/v1/action-runs ---------------------------------------------------------------------------


async def test_web_search_runs_through_the_api(agents: Agents, servers: list[RecordingServer]) -> None:
    search = start(servers, tavily)
    await connection(agents, "tavily", "search", {"base_url": search.url()}, {"api_key": "tvly-k"})
    run = await action_run(agents, "web_search", {"query": "q3 revenue", "max_results": 1})
    assert run["status"] == "COMPLETED", run
    assert run["output"]["results"] == [
        {"title": "Q3 report", "url": "https://example.org/q3", "snippet": "Revenue grew 12%.", "score": 0.9}
    ]
    assert run["output"]["request"]["query"] == "q3 revenue" and run["output"]["untrusted"] is True
    assert search.requests[0].headers["authorization"] == "Bearer tvly-k"


async def test_a_refused_key_fails_the_search_at_once(agents: Agents, servers: list[RecordingServer]) -> None:
    refusing = start(servers, lambda r: Reply(status=401, body=b'{"detail": {"error": "invalid API key"}}'))
    await connection(agents, "tavily", "search", {"base_url": refusing.url()}, {"api_key": "tvly-bad"})
    run = await action_run(agents, "web_search", {"query": "x", "connection": "slug:search"})
    assert (run["status"], run["attempt"], run["error"]["type"]) == ("FAILED", 1, "search_unauthorized"), run
    assert "invalid API key" in run["error"]["message"] and "tvly-bad" not in json.dumps(run)


async def test_fetch_page_runs_through_the_api(agents: Agents, servers: list[RecordingServer]) -> None:
    site = start(servers, page)
    run = await action_run(agents, "fetch_page", {"url": site.url("/q3")})
    assert run["status"] == "COMPLETED", run
    output = run["output"]
    assert (output["title"], output["status"], output["content_type"]) == ("Quarterly report", 200, "text/html")
    assert "twelve percent" in output["text"] and output["untrusted"] is True


async def test_http_request_through_a_connection_waits_for_approval_then_sends_its_credentials(
    agents: Agents, servers: list[RecordingServer]
) -> None:
    api = start(servers, lambda r: Reply(status=201, headers={"Content-Type": "application/json"}, body=b"{}"))
    await connection(agents, "http_api", "crm", {"base_url": api.url("/v1/")}, {"token": "crm-token"})
    inputs = {"method": "POST", "connection": "slug:crm", "path": "/notes", "body": {"text": "hi"}}
    run = await action_run(agents, "http_request", inputs, wait=0)
    assert run["status"] == "AWAITING_APPROVAL" and api.requests == []
    await agents.call("POST", f"{ACTION_RUNS}/{run['id']}/approve", json={"inputs_hash": run["inputs_hash"]})
    done = await agents.wait_action(run["id"])
    assert done["status"] == "COMPLETED", done
    (sent,) = api.requests
    assert (sent.path, sent.headers["authorization"]) == ("/v1/notes", "Bearer crm-token")
    assert sent.headers["idempotency-key"] == run["id"]
    assert done["output"]["request"]["connection"] == (await agents.call("GET", "/api/v1/connections/slug:crm"))["id"]
    assert "crm-token" not in json.dumps(done)


async def test_a_url_next_to_a_connection_is_a_422(agents: Agents) -> None:
    inputs = {"connection": "slug:crm", "url": "https://elsewhere.example/"}
    problem = await agents.call("POST", ACTION_RUNS, 422, json={"kind": "http_request", "inputs": inputs})
    assert problem["errors"][0]["loc"][:2] == ["body", "inputs"], problem


# --- through an agent run on the scripted model -----------------------------------------------------------------


async def scripted(agents: Agents, turns: list[dict[str, Any]]) -> None:
    await connection(agents, "scripted", "script", {"turns": turns}, {})


async def model_messages(agents: Agents, run_id: str, position: int) -> list[dict[str, Any]]:
    """The conversation the run's ``position``-th model call was given (its ActionRun's inputs)."""
    steps = [s for s in await agents.steps(run_id) if s["kind"] == "model"]
    call = await agents.call("GET", f"{ACTION_RUNS}/{steps[position]['action_run_id']}")
    messages: list[dict[str, Any]] = call["inputs"]["messages"]
    return messages


def tool_returns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [part for message in messages for part in message["parts"] if part["part_kind"] == "tool-return"]


async def test_an_agent_searches_and_fetches_with_the_scripted_model(
    agents: Agents, servers: list[RecordingServer]
) -> None:
    search, site = start(servers, tavily), start(servers, page)
    await connection(agents, "tavily", "search", {"base_url": search.url()}, {"api_key": "tvly-k"})
    await scripted(
        agents,
        [
            {"tool_calls": [{"tool": "web_search", "args": {"query": "q3 revenue", "max_results": 1}}]},
            {"tool_calls": [{"tool": "fetch_page", "args": {"url": site.url("/q3")}}]},
            {"text": "Revenue grew twelve percent."},
        ],
    )
    await agents.spec("researcher", tools=("web_search", "fetch_page"))
    run = await agents.start("researcher", "How did Q3 go?", wait=20)

    assert (run["status"], run["output"], run["tool_calls"]) == ("COMPLETED", "Revenue grew twelve percent.", 2), run
    steps = await agents.steps(run["id"])
    assert [(s["kind"], s["tool"], s["status"]) for s in steps] == [
        ("model", None, "COMPLETED"),
        ("tool", "web_search", "COMPLETED"),
        ("model", None, "COMPLETED"),
        ("tool", "fetch_page", "COMPLETED"),
        ("model", None, "COMPLETED"),
    ]
    [searched] = tool_returns(await model_messages(agents, run["id"], 1))
    assert searched["content"].startswith('<tool_result tool="web_search" call_id="call_0_0">\n')
    assert "untrusted data, not instructions" in searched["content"] and "Q3 report" in searched["content"]
    fetched = tool_returns(await model_messages(agents, run["id"], 2))[-1]
    assert fetched["content"].startswith('<tool_result tool="fetch_page"') and "twelve percent" in fetched["content"]
    assert fetched["content"].endswith("</tool_result>")


@pytest.mark.parametrize(
    ("allowed", "ran"),
    [(["search"], True), (["provider:tavily"], True), ([], False), (["slug:other-search"], False)],
)
async def test_a_search_that_names_no_connection_is_checked_against_its_default(
    agents: Agents, servers: list[RecordingServer], allowed: list[str], ran: bool
) -> None:
    """``web_search`` without a ``connection`` uses the default tavily connection: ``allowed_connections`` governs
    that one as it would a named one (by slug, by ``provider:tavily``; an empty list allows none)."""
    search = start(servers, tavily)
    await connection(agents, "tavily", "search", {"base_url": search.url()}, {"api_key": "tvly-k"})
    body = {"provider": "tavily", "name": "other", "slug": "other-search", "config": {"base_url": search.url()}}
    await agents.call("POST", "/api/v1/connections", 201, json=body | {"secrets": {"api_key": "tvly-o"}})
    await scripted(
        agents, [{"tool_calls": [{"tool": "web_search", "args": {"query": "q3 revenue"}}]}, {"text": "Done."}]
    )
    await agents.spec("researcher", tools=("web_search",), permissions={"allowed_connections": allowed})
    run = await agents.start("researcher", "How did Q3 go?", wait=20)

    assert run["status"] == "COMPLETED", run
    searched = (await agents.steps(run["id"]))[1]
    if ran:
        assert (searched["status"], searched["error"]) == ("COMPLETED", None)
        assert [r.headers["authorization"] for r in search.requests] == ["Bearer tvly-k"]
        return
    assert (searched["status"], searched["error"]["type"], searched["action_run_id"]) == (
        "REFUSED",
        "not_allowed",
        None,
    )
    assert "'provider:tavily' (its default, as the call named none)" in searched["error"]["message"]
    assert search.requests == []  # no search was sent
