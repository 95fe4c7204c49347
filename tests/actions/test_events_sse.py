"""GET /action-runs/{id}/events: server-sent events of transitions and progress, resumable, ending after the
terminal event."""

from __future__ import annotations

import json

import httpx

from tests.conftest import OrgHandle
from tests.helpers import parse_sse

RUNS = "/api/v1/action-runs"


async def test_the_stream_carries_every_transition_and_progress_event_then_ends(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    run = (await client.post(RUNS, headers=org.headers, json={"kind": "test_progress", "inputs": {"steps": 3}})).json()
    # Opened while the run may still be pending: the stream follows it live and closes after the terminal event.
    async with client.stream("GET", f"{RUNS}/{run['id']}/events", headers=org.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join([chunk async for chunk in response.aiter_text()])
    events = parse_sse(body)
    assert [e["id"] for e in events] == [str(n) for n in range(1, 7)]
    assert [e["event"] for e in events] == ["status", "status", "progress", "progress", "progress", "status"]
    payloads = [json.loads(e["data"]) for e in events]
    assert [p["data"].get("step") for p in payloads[2:5]] == [1, 2, 3]
    assert payloads[-1]["data"]["to"] == "COMPLETED"


async def test_last_event_id_resumes_after_that_event(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = (
        await client.post(
            f"{RUNS}?wait=10", headers=org.headers, json={"kind": "test_progress", "inputs": {"steps": 2}}
        )
    ).json()
    assert run["status"] == "COMPLETED"
    resumed = await client.get(f"{RUNS}/{run['id']}/events", headers={**org.headers, "Last-Event-ID": "3"})
    events = parse_sse(resumed.text)
    assert [e["id"] for e in events] == ["4", "5"]
    assert json.loads(events[-1]["data"])["data"]["to"] == "COMPLETED"
    at_end = await client.get(f"{RUNS}/{run['id']}/events", headers={**org.headers, "Last-Event-ID": "5"})
    assert parse_sse(at_end.text) == []
    bad = await client.get(f"{RUNS}/{run['id']}/events", headers={**org.headers, "Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["header", "last-event-id"]
