"""``/api/v1/automations``: CRUD, immutable versions, slugs, tenancy, 422s that store nothing, schema and graph."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import OrgHandle

BASE = "/api/v1/automations"


def diamond(slug: str = "diamond", **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "Diamond",
        "slug": slug,
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "steps": [
            {"key": "a", "action": "echo", "inputs": {"n": "${{ params.n }}"}},
            {"key": "b", "action": "echo", "inputs": {"from_a": "${{ steps.a.output.n }}"}},
            {"key": "c", "action": "echo", "depends_on": ["a"]},
            {"key": "d", "action": "echo", "inputs": {"b": "${{ steps.b.output }}", "c": "${{ steps.c.output }}"}},
        ],
    }
    spec.update(changes)
    return spec


async def test_create_read_update_versions_delete(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await client.post(BASE, json=diamond(), headers=org.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("aut_")
    assert (body["slug"], body["version"], len(body["content_hash"])) == ("diamond", 1, 64)
    assert body["spec"]["steps"][0]["on_failure"] == "fail_run"  # defaults are filled in
    assert body["spec"]["triggers"] == [{"type": "manual"}]

    by_slug = await client.get(f"{BASE}/slug:diamond", headers=org.headers)
    by_id = await client.get(f"{BASE}/{body['id']}", headers=org.headers)
    assert by_slug.json() == by_id.json() == body

    unchanged = await client.put(f"{BASE}/slug:diamond", json=diamond(), headers=org.headers)
    assert unchanged.status_code == 200
    assert unchanged.json()["version"] == 1  # same content hash: no new version

    changed = await client.put(f"{BASE}/{body['id']}", json=diamond(name="Diamond v2"), headers=org.headers)
    assert (changed.json()["version"], changed.json()["name"]) == (2, "Diamond v2")
    assert changed.json()["content_hash"] != body["content_hash"]

    versions = (await client.get(f"{BASE}/slug:diamond/versions", headers=org.headers)).json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    first = (await client.get(f"{BASE}/slug:diamond/versions/1", headers=org.headers)).json()
    assert (first["spec"]["name"], first["content_hash"]) == ("Diamond", body["content_hash"])
    missing = await client.get(f"{BASE}/slug:diamond/versions/9", headers=org.headers)
    assert missing.status_code == 404

    listed = (await client.get(BASE, headers=org.headers)).json()
    assert [a["slug"] for a in listed["items"]] == ["diamond"]

    deleted = await client.delete(f"{BASE}/slug:diamond", headers=org.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{BASE}/{body['id']}", headers=org.headers)).status_code == 404
    again = await client.post(BASE, json=diamond(), headers=org.headers)  # the slug is free again
    assert again.status_code == 201
    assert again.json()["id"] != body["id"]


async def test_slugs_are_unique_per_organization(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    assert (await client.post(BASE, json=diamond(), headers=org.headers)).status_code == 201
    clash = await client.post(BASE, json=diamond(), headers=org.headers)
    assert clash.status_code == 409
    assert clash.json()["type"] == "urn:virtuousai:problem:conflict"
    other = await client.post(BASE, json=diamond(), headers=other_org.headers)
    assert other.status_code == 201  # another organization may use the same slug
    await client.post(BASE, json=diamond("second"), headers=org.headers)
    rename = await client.put(f"{BASE}/slug:second", json=diamond("diamond"), headers=org.headers)
    assert rename.status_code == 409


async def test_another_organizations_automation_is_not_found(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    created = (await client.post(BASE, json=diamond(), headers=org.headers)).json()
    for path in (f"{BASE}/{created['id']}", f"{BASE}/slug:diamond", f"{BASE}/{created['id']}/versions"):
        response = await client.get(path, headers=other_org.headers)
        assert response.status_code == 404, path
    put = await client.put(f"{BASE}/{created['id']}", json=diamond(), headers=other_org.headers)
    assert put.status_code == 404
    assert (await client.get(BASE, headers=other_org.headers)).json()["items"] == []


async def test_invalid_spec_is_a_422_with_paths_and_stores_nothing(client: httpx.AsyncClient, org: OrgHandle) -> None:
    spec = diamond(
        steps=[
            {"key": "a", "action": "echo", "inputs": {"x": "${{ steps.b.output }}"}},
            {"key": "b", "action": "echo", "depends_on": ["a"]},
            {"key": "c", "action": "nope"},
            {"key": "d", "action": "sleep", "inputs": {"seconds": "${{ steps.a.output | }}"}},
            {"key": "d", "action": "sleep", "inputs": {"seconds": "x"}},
        ],
        triggers=[{"type": "cron", "expression": "every day", "timezone": "Nowhere/Else"}],
    )
    response = await client.post(BASE, json=spec, headers=org.headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:virtuousai:problem:validation-error"
    assert [e["loc"] for e in problem["errors"]] == [
        ["body", "steps", 2, "action"],
        ["body", "steps", 3, "inputs", "seconds"],
        ["body", "steps", 4, "key"],
        ["body", "steps", 4, "inputs", "seconds"],
        ["body", "triggers", 0, "expression"],
        ["body", "triggers", 0, "timezone"],
    ]
    assert (await client.get(BASE, headers=org.headers)).json()["items"] == []

    cycle = diamond(steps=spec["steps"][:2])
    response = await client.post(BASE, json=cycle, headers=org.headers)
    assert response.json()["errors"] == [
        {"loc": ["body", "steps", 0, "depends_on"], "msg": "cycle: a -> b -> a", "type": "cycle"}
    ]

    shape = await client.post(BASE, json=diamond(steps=[{"key": "a"}]), headers=org.headers)
    assert shape.status_code == 422
    assert shape.json()["errors"][0]["loc"] == ["body", "steps", 0]

    await client.post(BASE, json=diamond(), headers=org.headers)
    bad_update = await client.put(f"{BASE}/slug:diamond", json=cycle, headers=org.headers)
    assert bad_update.status_code == 422
    assert (await client.get(f"{BASE}/slug:diamond", headers=org.headers)).json()["version"] == 1


async def test_schema_and_graph(client: httpx.AsyncClient, org: OrgHandle) -> None:
    schema = (await client.get(f"{BASE}/schema", headers=org.headers)).json()
    assert schema["title"] == "AutomationSpec"
    assert {"name", "slug", "steps"} <= set(schema["required"])
    assert "Step" in schema["$defs"]

    await client.post(BASE, json=diamond(), headers=org.headers)
    graph = await client.get(f"{BASE}/slug:diamond/graph", headers=org.headers)
    assert graph.status_code == 200
    assert graph.headers["content-type"].startswith("text/plain")
    assert graph.text.splitlines()[0] == "flowchart TD"
    assert {"    a --> b", "    a --> c", "    b --> d", "    c --> d"} <= set(graph.text.splitlines())
    assert (await client.get(f"{BASE}/slug:nope/graph", headers=org.headers)).status_code == 404


async def test_reading_needs_a_key_and_writing_needs_member(client: httpx.AsyncClient, org: OrgHandle) -> None:
    assert (await client.get(BASE)).status_code == 401
    key = await client.post("/api/v1/api-keys", json={"role": "viewer"}, headers=org.headers)
    viewer = {"Authorization": f"Bearer {key.json()['key']}"}
    assert (await client.get(BASE, headers=viewer)).status_code == 200
    assert (await client.post(BASE, json=diamond(), headers=viewer)).status_code == 403


async def test_unknown_template_and_connection(client: httpx.AsyncClient, org: OrgHandle) -> None:
    spec = diamond(
        steps=[
            {"key": "a", "template": "slug:nightly"},
            {"key": "b", "action": "echo", "connection": "slug:nowhere"},
            {"key": "c", "action": "sleep", "connection": "slug:nowhere", "inputs": {"seconds": 1}},
            {"key": "d", "action": "echo", "connection": "${{ params.conn }}"},  # resolved at run time
        ]
    )
    response = await client.post(BASE, json=spec, headers=org.headers)
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["errors"]] == [
        (["body", "steps", 0, "template"], "unknown_template"),
        (["body", "steps", 1, "connection"], "unknown_connection"),
        (["body", "steps", 2, "connection"], "unknown_connection"),
    ]
    assert response.json()["errors"][2]["msg"] == "action kind 'sleep' takes no connection"


async def test_a_literal_connection_in_a_steps_inputs_must_exist(client: httpx.AsyncClient, org: OrgHandle) -> None:
    inputs = {"connection": "slug:nope", "dataset": "shop", "source": {"type": "sql_database", "tables": ["orders"]}}
    spec = diamond(steps=[{"key": "a", "action": "dlt_extract", "inputs": inputs}])
    response = await client.post(BASE, json=spec, headers=org.headers)
    assert response.status_code == 422, response.text
    assert [(e["loc"], e["msg"]) for e in response.json()["errors"]] == [
        (["body", "steps", 0, "inputs", "connection"], "unknown connection 'slug:nope'")
    ]
