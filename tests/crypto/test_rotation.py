"""rotate → rewrap → every record decrypts and none is left on the old version; the retired version opens nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import OrgHandle
from virtuousai.cli.keys import SEALED_TABLES
from virtuousai.config import Settings
from virtuousai.connections.service import SecretsUnavailable, binding_for, resolve_connection
from virtuousai.connections.tables import Connection
from virtuousai.crypto.envelope import DecryptionFailed, EnvelopeCipher
from virtuousai.crypto.keyring import LocalKeyring
from virtuousai.crypto.providers import build_key_provider
from virtuousai.crypto.rotation import count_by_version, retire_version, rewrap_all
from virtuousai.errors import Conflict
from virtuousai.store.tenant import TenantContext

API = "/api/v1/connections"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", key_provider="keyring")


@pytest.fixture
def keyring(app: FastAPI) -> LocalKeyring:
    provider = build_key_provider(app.state.settings)
    assert isinstance(provider, LocalKeyring)
    return provider


async def _connections(app: FastAPI) -> list[Connection]:
    async with app.state.sessions() as session:
        return list((await session.scalars(sa.select(Connection).order_by(Connection.id))).all())


async def _seed(client: httpx.AsyncClient, orgs: list[OrgHandle]) -> dict[str, str]:
    """Three connections per organization; returns id -> the secret it holds."""
    secrets: dict[str, str] = {}
    for org in orgs:
        for n in range(3):
            secret = f"pw-{org.org_id[-4:]}-{n}"
            response = await client.post(API, headers=org.headers, json={
                "provider": "postgres", "name": f"db{n}", "secrets": {"password": secret},
                "config": {"host": "127.0.0.1", "database": "d", "username": "u"}})  # fmt: skip
            assert response.status_code == 201, response.text
            secrets[response.json()["id"]] = secret
    return secrets


async def _resolve_all(app: FastAPI, keyring: LocalKeyring) -> dict[str, Any]:
    opened: dict[str, Any] = {}
    for row in await _connections(app):
        async with app.state.sessions() as session:
            resolved = await resolve_connection(session, TenantContext(tenant_id=row.tenant_id), row.id, keyring)
        opened[row.id] = resolved.secrets["password"]
    return opened


async def test_rotate_rewrap_retire(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle, keyring: LocalKeyring
) -> None:
    secrets = await _seed(client, [org, other_org])
    before = {row.id: row for row in await _connections(app)}
    async with app.state.sessions() as session:
        assert await count_by_version(session, SEALED_TABLES) == {1: 6}

    assert (await keyring.add_version()).version == 2
    # Retiring the old version while records use it is refused; retiring the active one always is.
    with pytest.raises(Conflict, match="6 record"):
        await retire_version(app.state.sessions, keyring, SEALED_TABLES, 1)
    with pytest.raises(Conflict, match="active"):
        await retire_version(app.state.sessions, keyring, SEALED_TABLES, 2)

    report = await rewrap_all(app.state.sessions, EnvelopeCipher(keyring), SEALED_TABLES, batch_size=4)
    assert (report.target_version, report.rewrapped, report.failed) == (2, 6, {})
    async with app.state.sessions() as session:
        assert await count_by_version(session, SEALED_TABLES) == {2: 6}
    after = {row.id: row for row in await _connections(app)}
    for conn_id, row in after.items():
        assert row.sealed_fields == before[conn_id].sealed_fields  # the ciphertext stays
        assert row.wrapped_key != before[conn_id].wrapped_key  # only the wrapped data key changes
    assert await _resolve_all(app, keyring) == secrets
    # Running it again finds nothing to do.
    again = await rewrap_all(app.state.sessions, EnvelopeCipher(keyring), SEALED_TABLES)
    assert (again.rewrapped, again.failed) == (0, {})

    await retire_version(app.state.sessions, keyring, SEALED_TABLES, 1)
    assert await _resolve_all(app, keyring) == secrets
    # The retired version opens nothing: not the envelopes it wrapped before the rewrap.
    for row in before.values():
        with pytest.raises(DecryptionFailed, match="retired"):
            await EnvelopeCipher(keyring).open(binding_for(row), row.sealed)


async def test_a_forced_retirement_makes_the_records_it_still_protects_unreadable(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, keyring: LocalKeyring
) -> None:
    secrets = await _seed(client, [org])
    await keyring.add_version()
    await retire_version(app.state.sessions, keyring, SEALED_TABLES, 1, force=True)
    for conn_id in secrets:
        async with app.state.sessions() as session:
            with pytest.raises(SecretsUnavailable, match="retired"):
                await resolve_connection(session, TenantContext(tenant_id=org.org_id), conn_id, keyring)
    report = await rewrap_all(app.state.sessions, EnvelopeCipher(keyring), SEALED_TABLES)
    assert report.rewrapped == 0
    assert set(report.failed) == set(secrets)
    # New secrets go under the active version and work.
    created = await client.post(API, headers=org.headers, json={"provider": "sqlite", "name": "s",
                                                                 "config": {"path": "/x"}})  # fmt: skip
    assert created.json()["key_version"] == 2
