"""Verified keys (``orgs/verified_keys.py``): a key verified a moment ago costs no database read, and every change of
access that is announced — through the API, or by another process on PostgreSQL — is seen at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import PG_URL, OrgHandle, Templates
from tests.helpers import eventually
from tests.servers import VAI
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.orgs.service import ApiKeyService, Principal, create_organization
from virtuousai.orgs.tables import ApiKey, Organization, Role, User
from virtuousai.orgs.verified_keys import VerifiedKeys
from virtuousai.store.drivers import Wakeup, WakeupHub
from virtuousai.store.drivers.postgres import PostgresRunQueue
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

LONG_TTL_S = 60.0  # longer than any test: a key refused within it was forgotten on an announcement, not by age


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", auth_cache_ttl_s=LONG_TTL_S)


async def listening(app: FastAPI, db_kind: str) -> None:
    """On PostgreSQL, wait until the app's LISTEN connection is up: it announces itself with an ``access`` wake-up,
    which forgets every key, and coming late (a loaded machine) it would forget a key the test has just kept."""
    if db_kind == "postgres":
        await eventually(lambda: app.state.verified_keys.generation >= 1, what="the LISTEN connection")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class StatementCounter:
    """Counts the statements an engine sends while it is installed."""

    def __init__(self, app: FastAPI) -> None:
        self.engine = app.state.engine.sync_engine
        self.count = 0

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


async def new_key(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, str]:
    created = await client.post("/api/v1/api-keys", headers=org.headers, json={"name": "cached"})
    assert created.status_code == 201, created.text
    body: dict[str, str] = created.json()
    return body


# -- through the API ---------------------------------------------------------------------------------------------


async def test_a_verified_key_is_trusted_without_reading_the_database(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    first = await client.get("/api/v1/me", headers=org.headers)
    assert first.status_code == 200, first.text
    with StatementCounter(app) as statements:
        again = await client.get("/api/v1/me", headers=org.headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert statements.count == 0


async def test_a_refused_key_is_looked_up_every_time(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    forged = org.api_key[: len("vai_") + 12 + 1] + "A" * 43  # the real key's prefix, another secret
    for _ in range(2):
        with StatementCounter(app) as statements:
            response = await client.get("/api/v1/me", headers=bearer(forged))
        assert response.status_code == 401
        assert statements.count > 0
    assert len(app.state.verified_keys) == 0


async def test_a_revocation_through_the_api_is_seen_by_the_next_request(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, db_kind: str
) -> None:
    await listening(app, db_kind)
    created = await new_key(client, org)
    assert (await client.get("/api/v1/me", headers=bearer(created["key"]))).status_code == 200
    assert (await client.get("/api/v1/me", headers=org.headers)).status_code == 200
    assert len(app.state.verified_keys) == 2

    revoked = await client.post(f"/api/v1/api-keys/{created['id']}/revoke", headers=org.headers)
    assert revoked.status_code == 200, revoked.text
    refused = await client.get("/api/v1/me", headers=bearer(created["key"]))
    assert refused.status_code == 401
    assert refused.json()["reason"] == "revoked"
    # Every key was forgotten, not only the revoked one; the others are simply verified again.
    assert (await client.get("/api/v1/me", headers=org.headers)).status_code == 200


async def test_a_revocation_reaches_this_process_with_its_commit(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, db_kind: str
) -> None:
    """Not through the ``NOTIFY`` echo (PostgreSQL): the commit itself schedules the wake-up, so it does not depend
    on the listener — here without its connection, as while it reconnects — and no request the loop takes up later
    meets the old entry."""
    created = await new_key(client, org)
    if db_kind == "postgres":
        await _end_the_listen_connection(app)
    assert (await client.get("/api/v1/me", headers=bearer(created["key"]))).status_code == 200
    assert len(app.state.verified_keys) >= 1
    async with app.state.sessions() as session:
        await ApiKeyService(session, TenantContext(tenant_id=org.org_id)).revoke(created["id"])
    await asyncio.sleep(0)  # one turn of the loop: the callbacks the commit scheduled, nothing from the network
    assert len(app.state.verified_keys) == 0


async def test_a_revocation_by_another_process_is_seen(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, db_kind: str, tmp_path: Path
) -> None:
    """`vai key revoke` in a process of its own. On PostgreSQL its NOTIFY reaches this app long before the
    cache's lifetime; on SQLite wake-ups stay in their process, so this app would trust the key until its entry
    aged out (docs/api.md) — there the test shortens the lifetime and checks that bound instead."""
    if db_kind == "sqlite":
        app.state.verified_keys.ttl_s = 1.0
    await listening(app, db_kind)
    created = await new_key(client, org)
    assert (await client.get("/api/v1/me", headers=bearer(created["key"]))).status_code == 200
    assert len(app.state.verified_keys) == 2

    env = {"VAI_DATABASE_URL": app.state.settings.database_url, "VAI_DATA_DIR": str(tmp_path / "cli")}
    revoked = await asyncio.to_thread(
        subprocess.run,
        [VAI, "key", "revoke", created["id"], "--org", org.org_id],
        env={**_without_vai_settings(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = time.monotonic()

    async def refused() -> httpx.Response | None:
        response = await client.get("/api/v1/me", headers=bearer(created["key"]))
        return response if response.status_code != 200 else None

    timeout = 10.0 if db_kind == "postgres" else app.state.verified_keys.ttl_s + 5.0
    response = await eventually(refused, timeout=timeout, what="the revoked key to be refused")
    assert response.status_code == 401
    assert response.json()["reason"] == "revoked"
    if db_kind == "postgres":
        assert time.monotonic() - revoked_at < LONG_TTL_S / 2


async def _end_the_listen_connection(app: FastAPI) -> None:
    """End this app's LISTEN connection from the server, as a network failure would, with its reconnection put off
    beyond the test (a reconnection announces itself with an ``access`` wake-up, which would forget every key)."""
    app.state.runtime.driver.reconnect_delay_s = 3600.0
    listening = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'")

    async def listen_backend() -> int | None:
        async with app.state.sessions() as session:
            pid: int | None = await session.scalar(listening)
        return pid

    pid = await eventually(listen_backend, what="the app's LISTEN connection")
    async with app.state.sessions() as session:
        ended = await session.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    assert ended


def _without_vai_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VAI_")}


@pytest.fixture
async def uncached_app(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, OrgHandle]]:
    """An app with ``VAI_AUTH_CACHE_TTL_S=0``, a client and an organization."""
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "off", auth_cache_ttl_s=0))
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session:
            created = await create_organization(session, "No cache", "nocache@example.com")
        handle = OrgHandle(created.organization.id, created.owner.id, created.key.plaintext)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client, handle


async def test_the_cache_can_be_turned_off(
    uncached_app: tuple[FastAPI, httpx.AsyncClient, OrgHandle],
) -> None:
    app, client, org = uncached_app
    assert (await client.get("/api/v1/me", headers=org.headers)).status_code == 200
    with StatementCounter(app) as statements:
        assert (await client.get("/api/v1/me", headers=org.headers)).status_code == 200
    assert statements.count > 0
    assert len(app.state.verified_keys) == 0


@pytest.mark.postgres
async def test_the_listener_announces_an_access_change_when_it_connects(db_templates: Templates) -> None:
    """A revocation's NOTIFY sent while a process was not listening is lost; the listener therefore announces an
    access change each time it (re)connects, and verified keys are checked again."""
    if db_templates.pg_database is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    hub = WakeupHub()
    heard: list[Wakeup] = []
    connected = asyncio.Event()

    def on_wakeup(wakeup: Wakeup) -> None:
        heard.append(wakeup)
        if wakeup.topic == "access":
            connected.set()

    unsubscribe = hub.subscribe(on_wakeup)
    url = sa.make_url(PG_URL).set(drivername="postgresql+asyncpg")
    listener = asyncio.create_task(PostgresRunQueue(url).listen(hub))
    try:
        await asyncio.wait_for(connected.wait(), timeout=10)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        unsubscribe()
    assert [w.topic for w in heard] == ["enqueued", "access"]


# -- the cache itself --------------------------------------------------------------------------------------------


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = datetime(2026, 11, 22, 12, 0, tzinfo=utcnow().tzinfo)

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


def principal(clocks: Clocks, *, expires_in_s: float | None = None, used_s_ago: float = 0.0) -> Principal:
    key = ApiKey(
        id="key_1",
        tenant_id="org_1",
        membership_id="mem_1",
        name="",
        prefix="abcdefghijkl",
        key_hash="h",
        role=Role.owner,
        created_at=clocks.wall,
        expires_at=None if expires_in_s is None else clocks.wall + timedelta(seconds=expires_in_s),
        last_used_at=clocks.wall - timedelta(seconds=used_s_ago),
    )
    return Principal(
        tenant=TenantContext(tenant_id="org_1", user_id="usr_1", role="owner", api_key_id="key_1"),
        role=Role.owner,
        user=User(id="usr_1", email="a@example.com", name="a", timezone="UTC", preferences={}),
        organization=Organization(id="org_1", name="A", settings={}),
        api_key=key,
    )


def cache(clocks: Clocks, ttl_s: float = 5.0, max_keys: int = 100) -> VerifiedKeys:
    return VerifiedKeys(ttl_s, max_keys=max_keys, monotonic=lambda: clocks.monotonic, wall_clock=lambda: clocks.wall)


def test_a_kept_key_is_trusted_for_its_lifetime_only() -> None:
    clocks = Clocks()
    keys = cache(clocks)
    kept = principal(clocks)
    keys.keep("h", kept, verified_in=keys.generation)
    clocks.advance(4.9)
    assert keys.get("h") is kept
    clocks.advance(0.2)
    assert keys.get("h") is None
    assert len(keys) == 0


def test_a_key_that_expires_while_kept_goes_back_to_the_database() -> None:
    clocks = Clocks()
    keys = cache(clocks, ttl_s=60.0)
    keys.keep("h", principal(clocks, expires_in_s=2.0), verified_in=0)
    clocks.advance(1.0)
    assert keys.get("h") is not None
    clocks.advance(1.0)
    assert keys.get("h") is None


def test_a_key_due_its_last_used_write_goes_back_to_the_database() -> None:
    clocks = Clocks()
    keys = cache(clocks, ttl_s=60.0)
    keys.keep("h", principal(clocks, used_s_ago=59.5), verified_in=0)  # LAST_USED_RESOLUTION is 60 s
    assert keys.get("h") is not None
    clocks.advance(0.5)
    assert keys.get("h") is None


def test_a_lifetime_of_zero_keeps_nothing() -> None:
    clocks = Clocks()
    keys = cache(clocks, ttl_s=0)
    keys.keep("h", principal(clocks), verified_in=0)
    assert keys.get("h") is None
    with pytest.raises(ValueError):
        VerifiedKeys(-1)


def test_the_oldest_key_goes_first_when_full() -> None:
    clocks = Clocks()
    keys = cache(clocks, max_keys=2)
    for name in ("a", "b", "c"):
        keys.keep(name, principal(clocks), verified_in=0)
    assert keys.get("a") is None
    assert keys.get("b") is not None and keys.get("c") is not None


async def test_an_access_wake_up_empties_the_cache_and_others_do_not() -> None:
    clocks = Clocks()
    keys = cache(clocks)
    keys.keep("h", principal(clocks), verified_in=0)
    for topic in ("enqueued", "cancel", "finished"):
        keys.on_wakeup(Wakeup(topic))  # type: ignore[arg-type]
    assert keys.get("h") is not None
    keys.on_wakeup(Wakeup("access", tenant_id="org_2"))
    assert keys.get("h") is None


def test_a_key_verified_across_an_access_change_is_not_kept() -> None:
    """A request read the key, a revocation committed and emptied the cache, then the request finished: what it
    read may be from before the revocation, so it is used for that request only."""
    clocks = Clocks()
    keys = cache(clocks)
    generation = keys.generation  # the request begins its lookup
    keys.on_wakeup(Wakeup("access", tenant_id="org_1"))  # meanwhile, a revocation commits
    keys.keep("h", principal(clocks), verified_in=generation)
    assert keys.get("h") is None
    keys.keep("h", principal(clocks), verified_in=keys.generation)  # the next lookup is kept
    assert keys.get("h") is not None
