"""Migrations: from an empty database to the heads, down to base and back, and /readyz telling the difference."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

import virtuousai
from tests.foundation.helpers import assert_problem
from virtuousai.orgs.service import authenticate, create_organization
from virtuousai.store import migrate
from virtuousai.store.base import Base
from virtuousai.store.engine import make_engine, make_sessionmaker


def import_every_table_module() -> None:
    """Register every primitive's tables on ``Base.metadata``, also those no router imports yet."""
    for module in pkgutil.walk_packages(virtuousai.__path__, "virtuousai."):
        if module.name.rsplit(".", 1)[-1] == "tables":
            importlib.import_module(module.name)


@pytest.fixture
async def empty_engine(empty_db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(empty_db_url)
    yield engine
    await engine.dispose()


async def table_columns(engine: AsyncEngine) -> dict[str, set[str]]:
    def read(conn: sa.Connection) -> dict[str, set[str]]:
        inspector = sa.inspect(conn)
        return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_upgrade_from_empty_creates_every_declared_table(empty_engine: AsyncEngine) -> None:
    assert await table_columns(empty_engine) == {}
    assert await migrate.current_heads(empty_engine) == set()
    assert not await migrate.is_current(empty_engine)

    await migrate.upgrade(empty_engine)

    assert await migrate.current_heads(empty_engine) == migrate.script_heads()
    assert await migrate.is_current(empty_engine)
    import_every_table_module()
    created = await table_columns(empty_engine)
    for name, table in Base.metadata.tables.items():
        assert name in created, f"table {name} is declared but no migration creates it"
        assert created[name] == {c.name for c in table.columns}, f"columns of {name} differ from its migration"


async def test_tenant_tables_are_indexed_by_tenant_once(empty_engine: AsyncEngine) -> None:
    # Lookups by tenant (and an organization's cascading delete) need an index led by tenant_id; the unique
    # (tenant_id, id) that composite foreign keys reference is one, so a tenant_id index of its own would only be
    # written on every insert and update (migration 0008 dropped them).
    await migrate.upgrade(empty_engine)

    def read(conn: sa.Connection) -> dict[str, list[list[str]]]:
        inspector = sa.inspect(conn)
        keys: dict[str, list[list[str]]] = {}
        for table in inspector.get_table_names():
            if "tenant_id" not in {c["name"] for c in inspector.get_columns(table)}:
                continue
            indexes = [list(i["column_names"]) for i in inspector.get_indexes(table)]
            uniques = [list(u["column_names"]) for u in inspector.get_unique_constraints(table)]
            keys[table] = [columns for columns in indexes + uniques if columns]
        return keys

    async with empty_engine.connect() as conn:
        keys = await conn.run_sync(read)
    assert "action_runs" in keys and "automation_step_runs" in keys
    for table, indexed in keys.items():
        assert any(columns[0] == "tenant_id" for columns in indexed), f"{table}: no index led by tenant_id"
        led = [columns for columns in indexed if columns[0] == "tenant_id"]
        assert ["tenant_id"] not in led or len(led) == 1, f"{table}: tenant_id indexed alone and in {led}"


async def test_upgrading_twice_changes_nothing(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    before = await table_columns(empty_engine)
    await migrate.upgrade(empty_engine)
    assert await table_columns(empty_engine) == before
    assert await migrate.is_current(empty_engine)


async def test_downgrade_to_base_then_upgrade_round_trips(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    sessions = make_sessionmaker(empty_engine)
    async with sessions() as session:
        await create_organization(session, "Before", "before@example.com")

    await migrate.downgrade(empty_engine, "base")

    assert await migrate.current_heads(empty_engine) == set()
    assert set(await table_columns(empty_engine)) <= {"alembic_version"}, "downgrade to base left tables behind"

    await migrate.upgrade(empty_engine)

    assert await migrate.is_current(empty_engine)
    async with sessions() as session:
        created = await create_organization(session, "After", "before@example.com")
        principal = await authenticate(session, f"Bearer {created.key.plaintext}")
    assert principal.organization.name == "After"


async def test_readyz_answers_503_until_the_schema_is_current(app: FastAPI, client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}

    await migrate.downgrade(app.state.engine, "base")
    not_ready = await client.get("/readyz")
    body = assert_problem(not_ready, 503, "unavailable")
    assert "vai migrate" in body["detail"]
    # Liveness does not depend on the database.
    assert (await client.get("/healthz")).json() == {"status": "ok"}

    await migrate.upgrade(app.state.engine)
    assert (await client.get("/readyz")).status_code == 200
