"""/api/v1/connections: create, read by every reference form, update, delete, roles, bad input, isolation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import OrgHandle
from tests.connections.conftest import CANARY, postgres_body
from virtuousai.connections.service import register_reference_check, unregister_reference_check
from virtuousai.connections.tables import Connection
from virtuousai.store.tenant import TenantContext

API = "/api/v1/connections"


async def _create(client: httpx.AsyncClient, org: OrgHandle, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(API, headers=org.headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _count(client: httpx.AsyncClient, org: OrgHandle) -> int:
    return len((await client.get(API, headers=org.headers)).json()["items"])


async def _key(client: httpx.AsyncClient, org: OrgHandle, role: str) -> dict[str, str]:
    response = await client.post("/api/v1/api-keys", headers=org.headers, json={"role": role})
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def test_create_shows_which_secrets_are_set_never_their_values(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await _create(client, org, postgres_body())
    assert created["id"].startswith("conn_")
    assert created["secret_fields_set"] == ["password"]
    assert created["config"] == {
        "host": "127.0.0.1",
        "port": 5432,
        "database": "test",
        "username": "postgres",
        "options": {},
    }
    assert "secrets" not in created
    assert CANARY not in str(created)


async def test_get_accepts_an_id_a_slug_and_the_provider_default(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await _create(client, org, postgres_body())
    for ref in (created["id"], "slug:warehouse", "provider:postgres"):
        response = await client.get(f"{API}/{ref}", headers=org.headers)
        assert response.status_code == 200, (ref, response.text)
        assert response.json()["id"] == created["id"]
    for ref in ("slug:nope", "provider:mysql", "conn_01JD000000000000000000000"):
        assert (await client.get(f"{API}/{ref}", headers=org.headers)).status_code == 404


async def test_list_filters_by_provider(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await _create(client, org, postgres_body())
    await _create(client, org, {"provider": "sqlite", "name": "Local", "config": {"path": "/tmp/x.db"}})
    everything = (await client.get(API, headers=org.headers)).json()["items"]
    only_sqlite = (await client.get(API, headers=org.headers, params={"provider": "sqlite"})).json()["items"]
    assert len(everything) == 2
    assert [c["provider"] for c in only_sqlite] == ["sqlite"]


async def test_providers_are_listed_with_their_schemas(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.get(f"{API}/providers", headers=org.headers)
    assert response.status_code == 200
    providers = {p["slug"]: p for p in response.json()}
    assert set(providers) >= {
        "postgres", "mysql", "sqlite", "duckdb", "http_api", "rest_api", "openai", "anthropic",
        "openai_compatible", "scripted", "tavily",
    }  # fmt: skip
    assert providers["postgres"]["secrets_schema"]["required"] == ["password"]
    assert "base_url" in providers["openai_compatible"]["config_schema"]["required"]
    assert providers["openai"]["config_schema"]["properties"]["order"]


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (postgres_body(provider="oracle"), 422, ["body", "provider"]),
        (postgres_body(secrets={}), 422, ["body", "secrets", "password"]),
        (postgres_body(secrets={"password": CANARY, "pin": "1"}), 422, ["body", "secrets", "pin"]),
        (postgres_body(config={"host": "h", "database": "d", "username": "u", "port": "five"}), 422,
         ["body", "config", "port"]),
        (postgres_body(config={"database": "d", "username": "u"}), 422, ["body", "config", "host"]),
        (postgres_body(slug="Not A Slug"), 422, ["body", "slug"]),
        ({"provider": "http_api", "name": "h", "config": {"base_url": "http://127.0.0.1:9", "auth_type": "basic"},
          "secrets": {"username": "u"}}, 422, ["body", "secrets", "password"]),
        ({"provider": "http_api", "name": "h", "config": {"base_url": "http://127.0.0.1:9", "auth_type": "header"},
          "secrets": {"token": CANARY}}, 422, ["body", "config"]),
        ({"provider": "openai_compatible", "name": "o", "config": {}}, 422, ["body", "config", "base_url"]),
        ({"provider": "scripted", "name": "s", "config": {}}, 422, ["body", "config", "turns"]),
        ({"provider": "scripted", "name": "s", "config": {"turns": [{"tool_calls": [{"tool": ""}]}]}}, 422,
         ["body", "config", "turns", 0, "tool_calls", 0, "tool"]),
    ],
)  # fmt: skip
async def test_bad_input_names_the_field_and_stores_nothing(
    client: httpx.AsyncClient, org: OrgHandle, body: dict[str, Any], status: int, loc: list[str]
) -> None:
    response = await client.post(API, headers=org.headers, json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert CANARY not in response.text
    assert await _count(client, org) == 0


async def test_a_used_slug_and_a_second_default_are_conflicts(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await _create(client, org, postgres_body())
    same_slug = await client.post(API, headers=org.headers, json=postgres_body(is_default=False))
    assert same_slug.status_code == 409
    assert same_slug.json()["errors"][0]["loc"] == ["body", "slug"]
    second_default = await client.post(API, headers=org.headers, json=postgres_body(slug="other"))
    assert second_default.status_code == 409
    assert second_default.json()["errors"][0]["loc"] == ["body", "is_default"]
    assert await _count(client, org) == 1
    # Not a default: fine. And other providers have their own default.
    await _create(client, org, postgres_body(slug="other", is_default=False))
    await _create(
        client,
        org,
        postgres_body(provider="mysql", slug="shop", config={"host": "h", "database": "d", "username": "u"}),
    )


async def test_the_database_itself_allows_one_default_per_provider(app: FastAPI, org: OrgHandle) -> None:
    import sqlalchemy as sa

    def row(conn_id: str) -> Connection:
        return Connection(
            id=conn_id, tenant_id=org.org_id, provider="postgres", name=conn_id, config={}, is_default=True,
            key_version=1, wrapped_key="x", sealed_fields={},
        )  # fmt: skip

    async with app.state.sessions() as session:
        session.add(row("conn_first"))
        await session.commit()
        session.add(row("conn_second"))
        with pytest.raises(sa.exc.IntegrityError):
            await session.commit()


async def test_update_replaces_secrets_and_config_without_merging(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await _create(
        client,
        org,
        {"provider": "http_api", "name": "API", "slug": "api", "config": {"base_url": "http://127.0.0.1:9"},
         "secrets": {"token": CANARY}},
    )  # fmt: skip
    assert created["secret_fields_set"] == ["token"]
    missing = await client.patch(f"{API}/slug:api", headers=org.headers, json={"config": {
        "base_url": "http://127.0.0.1:9", "auth_type": "basic"}})  # fmt: skip
    assert missing.status_code == 422  # the token alone cannot do basic auth
    assert ["body", "secrets", "username"] in [e["loc"] for e in missing.json()["errors"]]
    updated = await client.patch(
        f"{API}/slug:api",
        headers=org.headers,
        json={"config": {"base_url": "http://127.0.0.1:9", "auth_type": "basic"},
              "secrets": {"username": "u", "password": "p"}, "name": "Renamed"},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    assert updated.json()["secret_fields_set"] == ["password", "username"]
    assert updated.json()["config"]["auth_type"] == "basic"
    assert updated.json()["name"] == "Renamed"
    assert CANARY not in updated.text


async def test_update_moves_the_default_and_checks_uniqueness(client: httpx.AsyncClient, org: OrgHandle) -> None:
    first = await _create(client, org, postgres_body())
    second = await _create(client, org, postgres_body(slug="second", is_default=False))
    refused = await client.patch(f"{API}/{second['id']}", headers=org.headers, json={"is_default": True})
    assert refused.status_code == 409
    await client.patch(f"{API}/{first['id']}", headers=org.headers, json={"is_default": False})
    moved = await client.patch(f"{API}/{second['id']}", headers=org.headers, json={"is_default": True})
    assert moved.status_code == 200
    assert (await client.get(f"{API}/provider:postgres", headers=org.headers)).json()["id"] == second["id"]
    taken = await client.patch(f"{API}/{second['id']}", headers=org.headers, json={"slug": "warehouse"})
    assert taken.status_code == 409
    cleared = await client.patch(f"{API}/{second['id']}", headers=org.headers, json={"slug": None})
    assert cleared.json()["slug"] is None


@pytest.fixture
def pinned_check() -> Iterator[None]:
    async def pinned(session: AsyncSession, tenant: TenantContext, connection: Connection) -> Sequence[str]:
        return ["automation aut_test (nightly)"] if connection.slug == "pinned" else []

    register_reference_check("test-pinned", pinned)
    yield
    unregister_reference_check("test-pinned")


async def test_delete_is_refused_while_referenced(
    client: httpx.AsyncClient, org: OrgHandle, pinned_check: None
) -> None:
    pinned = await _create(client, org, postgres_body(slug="pinned"))
    free = await _create(client, org, postgres_body(slug="free", is_default=False))
    refused = await client.delete(f"{API}/slug:pinned", headers=org.headers)
    assert refused.status_code == 409
    assert refused.json()["references"] == ["automation aut_test (nightly)"]
    assert (await client.delete(f"{API}/{free['id']}", headers=org.headers)).status_code == 204
    assert (await client.get(f"{API}/{free['id']}", headers=org.headers)).status_code == 404
    assert (await client.get(f"{API}/{pinned['id']}", headers=org.headers)).status_code == 200


async def test_roles_viewers_read_members_test_admins_manage(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await _create(client, org, {"provider": "sqlite", "name": "L", "config": {"path": "/nonexistent"}})
    viewer, member = await _key(client, org, "viewer"), await _key(client, org, "member")
    assert (await client.get(f"{API}/{created['id']}", headers=viewer)).status_code == 200
    assert (await client.get(f"{API}/providers", headers=viewer)).status_code == 200
    assert (await client.post(f"{API}/{created['id']}/test", headers=viewer)).status_code == 403
    assert (await client.post(f"{API}/{created['id']}/test", headers=member)).status_code == 200
    for headers in (viewer, member):
        assert (await client.post(API, headers=headers, json=postgres_body())).status_code == 403
        assert (await client.patch(f"{API}/{created['id']}", headers=headers, json={"name": "x"})).status_code == 403
        assert (await client.delete(f"{API}/{created['id']}", headers=headers)).status_code == 403


async def test_another_organization_gets_404_for_every_reference_form(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    created = await _create(client, org, postgres_body())
    for ref in (created["id"], "slug:warehouse", "provider:postgres"):
        assert (await client.get(f"{API}/{ref}", headers=other_org.headers)).status_code == 404
        assert (await client.patch(f"{API}/{ref}", headers=other_org.headers, json={"name": "x"})).status_code == 404
        assert (await client.post(f"{API}/{ref}/test", headers=other_org.headers)).status_code == 404
        assert (await client.delete(f"{API}/{ref}", headers=other_org.headers)).status_code == 404
    assert (await client.get(API, headers=other_org.headers)).json()["items"] == []
    assert (await client.get(f"{API}/{created['id']}", headers=org.headers)).json()["name"] == "Warehouse"
