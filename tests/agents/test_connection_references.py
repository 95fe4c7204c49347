"""A connection named in an agent's ``permissions.allowed_connections`` cannot be deleted while the agent lives."""

from __future__ import annotations

import httpx

from tests.conftest import OrgHandle

SPEC = """---
name: Warehouse analyst
slug: warehouse-analyst
mode: primary
tools:
  - generate_query
permissions:
  allowed_connections:
    - slug:warehouse
---

Answer questions from the warehouse.
"""


async def test_connection_in_use_by_an_agent_is_not_deleted(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await client.post(
        "/api/v1/connections",
        headers=org.headers,
        json={
            "provider": "sqlite",
            "name": "Warehouse",
            "slug": "warehouse",
            "config": {"path": "w.db"},
            "secrets": {},
        },
    )
    assert created.status_code == 201, created.text
    spec = await client.post("/api/v1/agents/specs", headers=org.headers, json={"markdown": SPEC})
    assert spec.status_code == 201, spec.text

    refused = await client.delete("/api/v1/connections/slug:warehouse", headers=org.headers)
    assert refused.status_code == 409, refused.text
    assert "warehouse-analyst" in refused.json()["detail"]

    deleted_spec = await client.delete(f"/api/v1/agents/specs/{spec.json()['id']}", headers=org.headers)
    assert deleted_spec.status_code in (200, 204), deleted_spec.text
    allowed = await client.delete("/api/v1/connections/slug:warehouse", headers=org.headers)
    assert allowed.status_code in (200, 204), allowed.text
