"""The one resolver: every reference form, decrypted secrets, and stored ciphertext that was moved or changed."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.connections.conftest import CANARY, postgres_body
from virtuousai.connections.service import SecretsUnavailable, resolve_connection
from virtuousai.connections.tables import Connection
from virtuousai.crypto.providers import build_key_provider
from virtuousai.errors import NotFound
from virtuousai.store.tenant import TenantContext

API = "/api/v1/connections"


async def _create(client: httpx.AsyncClient, org: OrgHandle, **overrides: Any) -> str:
    response = await client.post(API, headers=org.headers, json=postgres_body(**overrides))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _resolve(app: FastAPI, org: OrgHandle, ref: str) -> Any:
    async with app.state.sessions() as session:
        return await resolve_connection(
            session, TenantContext(tenant_id=org.org_id), ref, build_key_provider(app.state.settings)
        )


async def _envelope(app: FastAPI, conn_id: str) -> dict[str, Any]:
    async with app.state.sessions() as session:
        row = (await session.execute(sa.select(Connection.__table__).where(Connection.id == conn_id))).one()
    return {k: row._mapping[k] for k in ("key_version", "wrapped_key", "sealed_fields", "encryption_format")}


async def _overwrite(app: FastAPI, conn_id: str, values: dict[str, Any]) -> None:
    async with app.state.sessions() as session:
        await session.execute(sa.update(Connection).where(Connection.id == conn_id).values(**values))
        await session.commit()


async def test_resolves_by_id_slug_and_provider_default(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    conn_id = await _create(client, org)
    for ref in (conn_id, "slug:warehouse", "provider:postgres"):
        resolved = await _resolve(app, org, ref)
        assert resolved.id == conn_id
        assert resolved.slug == "warehouse"
        assert resolved.provider == "postgres"
        assert resolved.config["database"] == "test"
        assert resolved.secrets == {"password": CANARY}
        assert CANARY not in repr(resolved)


async def test_another_organization_cannot_resolve_it(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    conn_id = await _create(client, org)
    for ref in (conn_id, "slug:warehouse", "provider:postgres"):
        with pytest.raises(NotFound):
            await _resolve(app, other_org, ref)


async def test_a_ciphertext_copied_into_another_tenants_row_does_not_decrypt(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    victim = await _create(client, org)
    thief = await _create(client, other_org, secrets={"password": "theirs"})
    victim_envelope = await _envelope(app, victim)
    # The field ciphertext alone, under B's own data key:
    await _overwrite(app, thief, {"sealed_fields": victim_envelope["sealed_fields"]})
    with pytest.raises(SecretsUnavailable):
        await _resolve(app, other_org, thief)
    # The whole envelope, wrapped data key included:
    await _overwrite(app, thief, victim_envelope)
    with pytest.raises(SecretsUnavailable) as caught:
        await _resolve(app, other_org, thief)
    assert CANARY not in str(caught.value)
    assert (await _resolve(app, org, victim)).secrets == {"password": CANARY}


async def test_a_ciphertext_copied_into_another_connection_of_the_same_tenant_does_not_decrypt(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    first = await _create(client, org)
    second = await _create(client, org, slug="second", is_default=False, secrets={"password": "other"})
    await _overwrite(app, second, await _envelope(app, first))
    with pytest.raises(SecretsUnavailable):
        await _resolve(app, org, second)
    assert (await _resolve(app, org, first)).secrets == {"password": CANARY}


async def test_any_flipped_byte_of_the_stored_secret_fails(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    conn_id = await _create(client, org)
    original = await _envelope(app, conn_id)
    stored = base64.b64decode(original["sealed_fields"]["password"])
    for index in range(len(stored)):
        flipped = bytearray(stored)
        flipped[index] ^= 0x80
        await _overwrite(app, conn_id, {"sealed_fields": {"password": base64.b64encode(bytes(flipped)).decode()}})
        with pytest.raises(SecretsUnavailable):
            await _resolve(app, org, conn_id)
    await _overwrite(app, conn_id, {"sealed_fields": original["sealed_fields"]})
    assert (await _resolve(app, org, conn_id)).secrets == {"password": CANARY}


async def test_an_unreadable_connection_answers_409_on_test(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    conn_id = await _create(client, org)
    await _overwrite(app, conn_id, {"wrapped_key": base64.b64encode(b"\0" * 60).decode()})
    response = await client.post(f"{API}/{conn_id}/test", headers=org.headers)
    assert response.status_code == 409
    assert response.json()["type"].endswith("secrets-unavailable")


async def test_an_llm_connection_carries_what_the_model_layer_reads(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    from virtuousai.llm.providers import read_llm_connection

    response = await client.post(API, headers=org.headers, json={
        "provider": "openai_compatible", "name": "Local", "slug": "local",
        "config": {"base_url": "http://127.0.0.1:11434/v1", "models": ["llama3"], "order": 2,
                   "prices": {"llama3": {"input_per_mtok": 0, "output_per_mtok": 0}}},
    })  # fmt: skip
    assert response.status_code == 201, response.text
    assert "timeout_s" not in response.json()["config"]  # unset options are not stored as nulls
    llm = read_llm_connection(await _resolve(app, org, "slug:local"))
    assert (llm.order, llm.default_model, llm.base_url, llm.api_key) == (2, "llama3", "http://127.0.0.1:11434/v1", None)
