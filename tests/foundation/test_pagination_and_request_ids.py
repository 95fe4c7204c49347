"""Cursor pagination on every list, and the request id on every response and log line."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.foundation.helpers import assert_problem, list_endpoints
from virtuousai.logging import JsonFormatter, RequestIdFilter
from virtuousai.store.pagination import MAX_LIMIT


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FOREIGN_CURSORS = {
    "not-base64": "%%%not a cursor%%%",
    "not-json": b64(b"hello"),
    "json-list": b64(b'["key_01"]'),
    "id-not-a-string": b64(b'{"id": 5}'),
    "no-id": b64(b'{"after": "key_01"}'),
}


async def test_every_list_rejects_a_cursor_it_did_not_issue(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    top_level = [e for e in list_endpoints(app) if not e.params]
    assert any(e.path == "/api/v1/api-keys" for e in top_level)
    for endpoint in top_level:
        for name, cursor in FOREIGN_CURSORS.items():
            response = await client.get(endpoint.path, headers=org.headers, params={"cursor": cursor})
            body = assert_problem(response, 422, "validation-error")
            assert body["errors"][0]["loc"] == ["query", "cursor"], (str(endpoint), name, body)


async def test_every_list_bounds_its_limit(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    for endpoint in [e for e in list_endpoints(app) if not e.params]:
        for limit in (0, -1, MAX_LIMIT + 1, "ten"):
            response = await client.get(endpoint.path, headers=org.headers, params={"limit": limit})
            body = assert_problem(response, 422, "validation-error")
            assert body["errors"][0]["loc"] == ["query", "limit"], (str(endpoint), limit, body)


async def test_every_list_answers_a_page(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    for endpoint in [e for e in list_endpoints(app) if not e.params]:
        for limit in (1, MAX_LIMIT):
            response = await client.get(endpoint.path, headers=org.headers, params={"limit": limit})
            assert response.status_code == 200, (str(endpoint), response.text)
            page = response.json()
            assert set(page) == {"items", "next_cursor"}, str(endpoint)
            assert len(page["items"]) <= limit


async def test_key_list_cursor_is_stable_under_new_keys(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for i in range(3):
        assert (await client.post("/api/v1/api-keys", headers=org.headers, json={"name": f"k{i}"})).status_code == 201
    first = (await client.get("/api/v1/api-keys", headers=org.headers, params={"limit": 2})).json()
    # Keys created after the first page was read are newer, so they never shift the pages that follow it.
    assert (await client.post("/api/v1/api-keys", headers=org.headers, json={"name": "late"})).status_code == 201
    rest = (
        await client.get("/api/v1/api-keys", headers=org.headers, params={"limit": 10, "cursor": first["next_cursor"]})
    ).json()
    seen = [k["id"] for k in first["items"] + rest["items"]]
    assert len(seen) == 4 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert rest["next_cursor"] is None


def test_every_list_documents_limit_and_cursor(app: FastAPI) -> None:
    document = app.openapi()
    for endpoint in list_endpoints(app):
        parameters = {p["name"]: p for p in document["paths"][endpoint.path]["get"].get("parameters", [])}
        assert {"limit", "cursor"} <= set(parameters), str(endpoint)
        assert parameters["limit"]["schema"]["minimum"] == 1, str(endpoint)
        assert parameters["limit"]["schema"]["maximum"] == MAX_LIMIT, str(endpoint)


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for sent in ("trace-42", "a.b:c_d-9", "x" * 128):
        ok = await client.get("/api/v1/me", headers=org.headers | {"X-Request-ID": sent})
        assert ok.headers["x-request-id"] == sent
        problem = await client.get("/api/v1/api-keys/key_missing", headers=org.headers | {"X-Request-ID": sent})
        assert assert_problem(problem, 404, "not-found")["request_id"] == sent


async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    for sent in ("", "has spaces", "x" * 129, "semi;colon", "<script>"):
        response = await client.get("/healthz", headers={"X-Request-ID": sent})
        minted = response.headers["x-request-id"]
        assert minted != sent
        assert minted.startswith("req_"), (sent, minted)


async def test_a_request_id_is_minted_per_request(client: httpx.AsyncClient) -> None:
    minted = [(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)]
    assert all(m.startswith("req_") for m in minted)
    assert len(set(minted)) == 3
    assert minted == sorted(minted), "minted ids are time-ordered"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record, formatted as the server's VAI_LOG_FORMAT=json handler formats it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous_level)


def records(buffer: io.StringIO, message: str) -> list[dict[str, object]]:
    parsed = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [r for r in parsed if message in str(r["msg"])]


async def test_log_lines_carry_the_request_id(app: FastAPI, client: httpx.AsyncClient, json_log: io.StringIO) -> None:
    async def noisy() -> dict[str, str]:
        logging.getLogger("tests.noisy").info("handling a noisy request")
        return {"status": "logged"}

    app.add_api_route("/test-only/noisy", noisy)
    sent = await client.get("/test-only/noisy", headers={"X-Request-ID": "trace-log-1"})
    minted = await client.get("/test-only/noisy")
    lines = records(json_log, "handling a noisy request")
    assert [line["request_id"] for line in lines] == ["trace-log-1", minted.headers["x-request-id"]]
    assert sent.status_code == 200


async def test_an_unhandled_error_is_a_problem_with_the_request_id(app: FastAPI, json_log: io.StringIO) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug, not a domain error")

    app.add_api_route("/test-only/broken", broken)
    # Starlette re-raises after answering, so the error also reaches the server; here that is the transport.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/test-only/broken", headers={"X-Request-ID": "trace-500"})
    body = assert_problem(response, 500, "internal-error")
    assert "a bug" not in body["detail"], "internal error text must not reach the client"
    assert body["request_id"] == "trace-500"
    logged = records(json_log, "unhandled error on GET /test-only/broken")
    assert [line["request_id"] for line in logged] == ["trace-500"]
    assert "RuntimeError" in str(logged[0]["exc"])
