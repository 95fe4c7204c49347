"""Engine and session factory, built in the app's lifespan (never at import)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from virtuousai.config import normalize_database_url

# A pooled PostgreSQL connection idle for longer than this is checked before it is handed out.
PING_AFTER_IDLE_S = 5.0


def make_engine(url: str, *, ping_after_idle_s: float = PING_AFTER_IDLE_S, **kwargs: Any) -> AsyncEngine:
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        return _make_sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # Generic plans: our statements are key lookups and fixed-shape writes, planned once per connection. Left to
    # choose, PostgreSQL plans a parameterized statement anew on every execution when its generic estimate looks
    # worse than the custom ones (a pass's write, a statement of data-modifying CTEs over arrays, cost ~1 ms of
    # planning per chain step this way: docs/automations.md, "Fast paths").
    kwargs.setdefault("connect_args", {"server_settings": {"plan_cache_mode": "force_generic_plan"}})
    engine = create_async_engine(url, **kwargs)
    _ping_idle_connections(engine, ping_after_idle_s)
    return engine


def _ping_idle_connections(engine: AsyncEngine, after_s: float) -> None:
    """Check a connection before use only if it sat idle in the pool for ``after_s`` or more.

    SQLAlchemy's ``pool_pre_ping`` checks every checkout, and with asyncpg a check is three round trips (BEGIN, a
    query, ROLLBACK): on a worker that commits a transaction per run that was a third of its statements. A
    connection back from use a moment ago is alive but for a server restart in that moment; one that sat idle may
    have been dropped (a restart, an idle timeout, a proxy). A failed check raises ``DisconnectionError``, on which
    the pool discards the connection and tries another (up to three times). A connection that dies within the
    idle window fails its next statement instead, like any connection lost mid-use: that transaction rolls back,
    and the pool replaces every connection older than the failure."""
    pool = engine.sync_engine.pool

    @sa.event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < after_s:
            return  # new, or back from use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"a pooled connection failed its check: {exc}") from exc


def _make_sqlite_engine(url: str, **kwargs: Any) -> AsyncEngine:
    db_path = sa.engine.make_url(url).database
    if db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so our BEGIN IMMEDIATE below is the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads then writes can fail with
        # SQLITE_BUSY without waiting, which would surface as random 500s under concurrent workers.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with sessions() as session, session.begin():
        yield session
