"""Shared fixtures.

``db_url`` gives every test its own freshly migrated database, once on SQLite and once on PostgreSQL:
- SQLite: a copy of a migrated template file;
- PostgreSQL: ``CREATE DATABASE … TEMPLATE`` of a migrated template database made once per test session, one test
  ahead and dropped after it in a thread (``PreparedDatabases``).
So leftovers of one test can never reach another. With ``CI=true`` the PostgreSQL tests must run: an unreachable
server fails the run instead of skipping.

``start_server`` starts ``vai serve`` processes (``tests/servers.py``) and kills those a test leaves running.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.servers import STOP_TIMEOUT_S, Server, start_serve
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.orgs.service import create_organization
from virtuousai.store import migrate
from virtuousai.store.engine import make_engine, make_sessionmaker

PG_URL = os.environ.get("VAI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_dsn(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_reachable() -> bool:
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


class PreparedDatabases:
    """PostgreSQL databases copied from the template one test ahead, and dropped after it, in a thread of their own.

    A copy of ours takes 0.1 to 0.4 s (idle to busy server) and a ``DROP`` 0.05 to 0.2 s; made while the test
    before runs and dropped while the test after runs, neither is on a test's path (the suite has ~600 PostgreSQL
    tests on 2 cores). The drop forces out any connection a test left open."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-db")
        self._next = self._prepare()
        self._drops: list[Future[None]] = []

    def _prepare(self) -> tuple[str, Future[None]]:
        name = f"vai_t_{secrets.token_hex(6)}"
        # Not STRATEGY FILE_COPY: 3x faster on an idle server (0.035 s instead of 0.108 s), but its checkpoints made
        # the suite's PostgreSQL setups cost 74 s instead of 59 s under the suite's own load.
        return name, self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')

    def _admin(self, sql: str) -> Future[None]:
        return self._thread.submit(lambda: asyncio.run(_pg_admin(sql)))

    def take(self) -> str:
        name, made = self._next
        made.result()
        self._next = self._prepare()
        return name

    def discard(self, name: str) -> None:
        """Drop a database taken before, behind this thread's other work; a failed drop is raised by the next call."""
        for drop in [d for d in self._drops if d.done()]:
            drop.result()  # raises what a failed drop raised
            self._drops.remove(drop)
        self._drops.append(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        name, made = self._next
        made.result()
        self.discard(name)
        for drop in self._drops:
            drop.result()
        self._thread.shutdown()


@dataclass
class Templates:
    sqlite_file: Path
    pg_database: str | None
    prepared: PreparedDatabases | None = None


@pytest.fixture(scope="session")
def db_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    sqlite_file = tmp_path_factory.mktemp("tpl") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{sqlite_file}"))
    pg_database: str | None = None
    if asyncio.run(_pg_reachable()):
        pg_database = f"vai_tpl_{os.getpid()}_{secrets.token_hex(3)}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{pg_database}"'))
        asyncio.run(_migrate(_pg_dsn(pg_database)))
    elif IN_CI:
        pytest.exit(f"CI=true but PostgreSQL is unreachable at {PG_URL}", returncode=3)
    prepared = PreparedDatabases(pg_database) if pg_database else None
    yield Templates(sqlite_file=sqlite_file, pg_database=pg_database, prepared=prepared)
    if prepared:
        prepared.close()
    if pg_database:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, db_templates: Templates, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    if db_kind == "sqlite":
        target = tmp_path / "vai.db"
        shutil.copyfile(db_templates.sqlite_file, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    if db_templates.prepared is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = db_templates.prepared.take()
    yield _pg_dsn(name)
    db_templates.prepared.discard(name)


@pytest.fixture
def empty_db_url(db_kind: str, db_templates: Templates, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it (not even alembic_version)."""
    if db_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if db_templates.pg_database is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = f"vai_empty_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield _pg_dsn(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings.resolved_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass
class OrgHandle:
    """An organization created for a test, with its owner's key and ready-made headers."""

    org_id: str
    user_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def make_org(app: FastAPI):  # type: ignore[no-untyped-def]
    """``await make_org("Acme")`` → an ``OrgHandle`` in the app's database."""

    async def factory(name: str = "Acme", email: str | None = None) -> OrgHandle:
        email = email or f"owner-{secrets.token_hex(4)}@example.com"
        async with app.state.sessions() as session:
            created = await create_organization(session, name, email)
        return OrgHandle(created.organization.id, created.owner.id, created.key.plaintext)

    return factory


@pytest.fixture
async def org(make_org) -> OrgHandle:  # type: ignore[no-untyped-def]
    result: OrgHandle = await make_org("Org A")
    return result


@pytest.fixture
async def other_org(make_org) -> OrgHandle:  # type: ignore[no-untyped-def]
    result: OrgHandle = await make_org("Org B")
    return result


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start_server(env, *args)`` → a ``vai serve`` answering on a free port; killed at teardown if still up."""
    started: list[Server] = []

    def start(env: dict[str, str], *args: str) -> Server:
        server = start_serve(env, *args, logs_dir=tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=STOP_TIMEOUT_S)
