"""PostgreSQL connections are checked before use only after sitting idle (``store/engine.py``): an idle connection
that died is replaced unseen; one in steady use is not checked, and if it died its next statement fails once, after
which the pool hands out fresh connections."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import PG_URL
from virtuousai.store.engine import make_engine, make_sessionmaker


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def backend_pid(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as session:
        return int(await session.scalar(sa.text("SELECT pg_backend_pid()")) or 0)


async def terminate(pid: int) -> None:
    admin = await asyncpg.connect(PG_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)  # waits until it is gone
    finally:
        await admin.close()


async def test_an_idle_connection_that_died_is_replaced_before_use(db_url: str) -> None:
    engine = make_engine(db_url, ping_after_idle_s=0.0, pool_size=1, max_overflow=0)
    try:
        pid = await backend_pid(engine)
        await terminate(pid)
        assert await backend_pid(engine) not in (0, pid)
    finally:
        await engine.dispose()


async def test_a_connection_in_steady_use_is_not_checked(db_url: str) -> None:
    engine = make_engine(db_url, ping_after_idle_s=3600.0, pool_size=1, max_overflow=0)
    try:
        pid = await backend_pid(engine)
        await terminate(pid)
        with pytest.raises(sa.exc.DBAPIError) as failed:  # not checked: the dead connection is used, and fails
            await backend_pid(engine)
        assert failed.value.connection_invalidated
        assert await backend_pid(engine) not in (0, pid)  # the pool replaced it
    finally:
        await engine.dispose()
