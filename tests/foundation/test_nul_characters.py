"""U+0000 is refused everywhere with the same 422 on both databases (PostgreSQL cannot store it)."""

from __future__ import annotations

import httpx

from tests.conftest import OrgHandle


async def test_nul_in_a_body_string_is_a_422_with_its_path(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.post(
        "/api/v1/action-runs", headers=org.headers, json={"kind": "echo", "inputs": {"notes": ["ok", "a\u0000b"]}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "inputs", "notes", 1]
    listed = await client.get("/api/v1/action-runs", headers=org.headers)
    assert listed.json()["items"] == []


async def test_nul_in_a_key_a_path_or_a_query_is_a_422(client: httpx.AsyncClient, org: OrgHandle) -> None:
    in_key = await client.post("/api/v1/api-keys", headers=org.headers, json={"na\u0000me": "x"})
    assert in_key.status_code == 422
    assert in_key.json()["errors"][0]["loc"] == ["body", "na\u0000me"]
    in_path = await client.get("/api/v1/connections/slug:a%00b", headers=org.headers)
    assert in_path.status_code == 422
    assert in_path.json()["errors"][0]["loc"] == ["path", "ref"]
    in_query = await client.get("/api/v1/action-runs", headers=org.headers, params={"kind": "a\u0000"})
    assert in_query.status_code == 422
    assert in_query.json()["errors"][0]["loc"] == ["query", "kind"]
