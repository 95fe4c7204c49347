"""/api/v1/templates: versions, instantiation with an immutable snapshot, bad input, roles and isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import OrgHandle
from virtuousai.runtime.tables import ActionRun

API = "/api/v1/templates"

PARAMETERS = {
    "type": "object",
    "properties": {
        "table": {"type": "string", "minLength": 1},
        "limit": {"type": "integer", "minimum": 1, "default": 10},
    },
    "required": ["table"],
}


def echo_template(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "action",
        "name": "Echo a table",
        "slug": "echo-table",
        "parameters": PARAMETERS,
        "body": {"kind": "echo", "inputs": {"table": "${{ params.table }}", "limit": "${{ params.limit }}",
                                            "note": "rows of ${{ params.table }}"}},
    }  # fmt: skip
    body.update(overrides)
    return body


async def _create(client: httpx.AsyncClient, org: OrgHandle, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post(API, headers=org.headers, json=body or echo_template())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _stored_snapshot(app: FastAPI, run_id: str) -> dict[str, Any]:
    async with app.state.sessions() as session:
        snapshot = await session.scalar(sa.select(ActionRun.template_snapshot).where(ActionRun.id == run_id))
    assert isinstance(snapshot, dict)
    return snapshot


async def test_create_get_by_id_and_slug(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await _create(client, org)
    assert created["id"].startswith("tpl_")
    assert (created["current_version"], len(created["content_hash"])) == (1, 64)
    for ref in (created["id"], "slug:echo-table"):
        assert (await client.get(f"{API}/{ref}", headers=org.headers)).json()["id"] == created["id"]
    listed = (await client.get(API, headers=org.headers, params={"kind": "action"})).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert (await client.get(API, headers=org.headers, params={"kind": "automation"})).json()["items"] == []


async def test_content_changes_make_new_versions_and_metadata_does_not(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    created = await _create(client, org)
    renamed = (await client.patch(f"{API}/slug:echo-table", headers=org.headers, json={"name": "Renamed"})).json()
    assert (renamed["current_version"], renamed["name"]) == (1, "Renamed")
    same = await client.patch(f"{API}/slug:echo-table", headers=org.headers, json={"body": echo_template()["body"]})
    assert same.json()["current_version"] == 1
    new_body = {"kind": "echo", "inputs": {"table": "${{ params.table }}"}}
    changed = (await client.patch(f"{API}/slug:echo-table", headers=org.headers, json={"body": new_body})).json()
    assert changed["current_version"] == 2
    assert changed["content_hash"] != created["content_hash"]
    versions = (await client.get(f"{API}/slug:echo-table/versions", headers=org.headers)).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["body"] == echo_template()["body"]
    assert versions[1]["content_hash"] == created["content_hash"]


async def test_instantiate_creates_a_run_with_the_snapshot(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    created = await _create(client, org)
    response = await client.post(f"{API}/slug:echo-table/instantiate", headers=org.headers,
                                 json={"params": {"table": "orders"}})  # fmt: skip
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["run"]["kind"] == "echo"
    assert result["run"]["inputs"] == {"table": "orders", "limit": 10, "note": "rows of orders"}
    snapshot = result["snapshot"]
    assert snapshot["template_id"] == created["id"]
    assert (snapshot["version"], snapshot["version_hash"]) == (1, created["content_hash"])
    assert snapshot["params"] == {"table": "orders", "limit": 10}
    assert snapshot["body"] == echo_template()["body"]
    assert await _stored_snapshot(app, result["run"]["id"]) == snapshot


async def test_a_runs_snapshot_is_unchanged_after_the_template_changes(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await _create(client, org)
    first = (await client.post(f"{API}/slug:echo-table/instantiate", headers=org.headers,
                               json={"params": {"table": "orders", "limit": 5}})).json()  # fmt: skip
    before = await _stored_snapshot(app, first["run"]["id"])
    new_body = {"kind": "echo", "inputs": {"other": "${{ params.table }}"}}
    await client.patch(f"{API}/slug:echo-table", headers=org.headers, json={"body": new_body, "name": "changed"})
    second = (await client.post(f"{API}/slug:echo-table/instantiate", headers=org.headers,
                                json={"params": {"table": "orders"}})).json()  # fmt: skip
    assert second["snapshot"]["version"] == 2
    assert second["run"]["inputs"] == {"other": "orders"}
    assert await _stored_snapshot(app, first["run"]["id"]) == before
    # An older version can still be instantiated on purpose.
    pinned = (await client.post(f"{API}/slug:echo-table/instantiate", headers=org.headers,
                                json={"params": {"table": "t"}, "version": 1})).json()  # fmt: skip
    assert pinned["snapshot"]["body"] == before["body"]
    assert (await client.delete(f"{API}/slug:echo-table", headers=org.headers)).status_code == 204
    assert await _stored_snapshot(app, first["run"]["id"]) == before


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"parameters": {"type": "array"}}, ["body", "parameters", "type"]),
        ({"parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}, ["body", "parameters"]),
        ({"parameters": {"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/s.json"}}}},
         ["body", "parameters"]),
        ({"parameters": {"$schema": "http://127.0.0.1:9/meta", "type": "object"}}, ["body", "parameters", "$schema"]),
        ({"body": {"kind": "echo", "inputs": {"x": "${{ params.undeclared }}"}}}, ["body", "body", "inputs", "x"]),
        ({"body": {"kind": "no-such-kind", "inputs": {}}}, ["body", "body", "kind"]),
        ({"body": {"kind": "echo", "inputs": {}, "surprise": 1}}, ["body", "body", "surprise"]),
        ({"slug": "Bad Slug"}, ["body", "slug"]),
    ],
)  # fmt: skip
async def test_bad_templates_name_the_field_and_store_nothing(
    client: httpx.AsyncClient, org: OrgHandle, overrides: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(API, headers=org.headers, json=echo_template(**overrides))
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["errors"]], response.json()
    assert (await client.get(API, headers=org.headers)).json()["items"] == []


async def test_bad_params_and_used_slugs(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await _create(client, org)
    used = await client.post(API, headers=org.headers, json=echo_template())
    assert used.status_code == 409
    assert used.json()["errors"][0]["loc"] == ["body", "slug"]
    url = f"{API}/slug:echo-table/instantiate"
    missing = await client.post(url, headers=org.headers, json={"params": {}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "params"]
    wrong = await client.post(url, headers=org.headers, json={"params": {"table": "t", "limit": 0}})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["body", "params", "limit"]
    assert (
        await client.post(url, headers=org.headers, json={"params": {"table": "t"}, "version": 9})
    ).status_code == 404


async def test_an_automation_template_whose_body_is_no_automation_spec_starts_nothing(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    # (Automation templates that work: tests/automations/test_templates.py.)
    await _create(client, org, echo_template(kind="automation", slug="auto", body={"steps": []}))
    response = await client.post(f"{API}/slug:auto/instantiate", headers=org.headers, json={"params": {"table": "t"}})
    assert response.status_code == 422
    assert ["template", "rendered", "steps"] in [e["loc"] for e in response.json()["errors"]]
    assert (await client.get("/api/v1/automations", headers=org.headers)).json()["items"] == []


async def test_roles_and_other_organizations(client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle) -> None:
    created = await _create(client, org)
    key = (await client.post("/api/v1/api-keys", headers=org.headers, json={"role": "viewer"})).json()["key"]
    viewer = {"Authorization": f"Bearer {key}"}
    assert (await client.get(f"{API}/{created['id']}", headers=viewer)).status_code == 200
    assert (await client.post(API, headers=viewer, json=echo_template(slug="v"))).status_code == 403
    assert (await client.post(f"{API}/{created['id']}/instantiate", headers=viewer, json={})).status_code == 403
    for ref in (created["id"], "slug:echo-table"):
        other = other_org.headers
        assert (await client.get(f"{API}/{ref}", headers=other)).status_code == 404
        assert (await client.get(f"{API}/{ref}/versions", headers=other)).status_code == 404
        assert (await client.patch(f"{API}/{ref}", headers=other, json={"name": "x"})).status_code == 404
        assert (await client.post(f"{API}/{ref}/instantiate", headers=other,
                                  json={"params": {"table": "t"}})).status_code == 404  # fmt: skip
        assert (await client.delete(f"{API}/{ref}", headers=other)).status_code == 404
    assert (await client.get(f"{API}/{created['id']}", headers=org.headers)).status_code == 200
