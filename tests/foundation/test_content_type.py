"""Every route that takes a JSON body refuses a body declared as something else with one 415 problem that names the
type it got (``api/deps.require_json_body``), instead of a 422 about dictionaries; and says so in /openapi.json.
Routes are discovered from the app, so new ones are covered."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.foundation.helpers import api_endpoints


def body_routes(app: FastAPI) -> list[tuple[str, str]]:
    """``(method, path)`` of every route with a body, path parameters filled with ``x``."""
    return [(e.method, re.sub(r"\{[^}]+\}", "x", e.path)) for e in api_endpoints(app) if e.has_body]


@pytest.mark.parametrize("declared", ["application/x-www-form-urlencoded", "text/plain", None])
async def test_a_body_not_declared_as_json_is_a_415_naming_its_type(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, declared: str
) -> None:
    routes = body_routes(app)
    assert ("POST", "/api/v1/action-runs") in routes and len(routes) > 10
    for method, path in routes:
        headers = {**org.headers, **({"Content-Type": declared} if declared else {})}
        response = await client.request(method, path, headers=headers, content=b'{"kind": "echo"}')
        assert response.status_code == 415, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"] == "urn:virtuousai:problem:unsupported-media-type"
        assert str(declared or "declared none") in problem["detail"] and "application/json" in problem["detail"]
        assert problem["errors"][0]["loc"] == ["header", "content-type"]
    assert (await client.get("/api/v1/action-runs", headers=org.headers)).json()["items"] == []


async def test_json_in_its_spellings_is_read(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for declared in ("application/json", "application/json; charset=utf-8", "application/vnd.example+json"):
        headers = {**org.headers, "Content-Type": declared}
        response = await client.post("/api/v1/action-runs", headers=headers, content=b'{"kind": "echo"}')
        assert response.status_code == 201, (declared, response.text)
    # A route without a body does not care what an empty request declares.
    cancel = await client.post("/api/v1/api-keys/key_x/revoke", headers={**org.headers, "Content-Type": "text/plain"})
    assert cancel.status_code == 404


async def test_the_document_lists_the_415_where_it_can_happen(app: FastAPI, client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for method, path in body_routes(app):
        template = next(p for p in document["paths"] if re.sub(r"\{[^}]+\}", "x", p) == path)
        assert "415" in document["paths"][template][method.lower()]["responses"], (method, path)
