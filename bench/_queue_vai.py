"""Our side of ``bench/queue.py``: scratch databases, bulk enqueue, ``vai worker`` processes, and the measures.

Runs are enqueued with one ``INSERT … SELECT generate_series`` (their creation events too), exactly as
``ActionRunService.create`` would leave them, so the measure is the queue and the workers, not the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import asyncpg

ADMIN_URL = os.environ.get("VAI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO_ROOT = Path(__file__).resolve().parents[1]
NOOP_KIND = "echo"
EMPTY_INPUTS_HASH = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # sha256("{}")


def pg_url(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@contextlib.asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one measure, dropped afterwards."""
    name = f"bench_{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield pg_url(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def prepare(url: str) -> str:
    """Migrate the database and create the organization the runs belong to; returns its id."""
    from virtuousai.orgs.service import create_organization
    from virtuousai.store import migrate
    from virtuousai.store.engine import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            created = await create_organization(session, "Bench", f"bench-{secrets.token_hex(4)}@example.com")
        return created.organization.id
    finally:
        await engine.dispose()


PG_ENQUEUE = f"""
WITH new AS (
    INSERT INTO action_runs (id, tenant_id, kind, status, inputs, inputs_hash, priority, timeout_s, max_attempts,
                             attempt, origin, created_at, updated_at, available_at, lease_token, last_event_seq,
                             requires_approval)
    SELECT $1 || lpad(i::text, 9, '0'), $2, '{NOOP_KIND}', 'PENDING', '{{}}'::jsonb, '{EMPTY_INPUTS_HASH}', 0, 60, 1,
           0, 'api', clock_timestamp(), clock_timestamp(), clock_timestamp(), 0, 1, false
    FROM generate_series(1, $3) AS i
    RETURNING id, created_at
)
INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
SELECT 'evt_' || substr(new.id, 5), $2, new.id, 1, 'status', '{{"from": null, "to": "PENDING", "origin": "api"}}',
       new.created_at
FROM new
"""

PG_HISTORY = f"""
INSERT INTO action_runs (id, tenant_id, kind, status, inputs, inputs_hash, output, priority, timeout_s, max_attempts,
                         attempt, origin, created_at, updated_at, available_at, started_at, finished_at, lease_token,
                         last_event_seq, requires_approval)
SELECT 'run_hist_' || lpad(i::text, 9, '0'), $1, '{NOOP_KIND}', 'COMPLETED', '{{}}'::jsonb, '{EMPTY_INPUTS_HASH}',
       '{{}}'::jsonb, 0, 60, 1, 1, 'api', t, t, t, t, t, 1, 3, false
FROM generate_series(1, $2) AS i, LATERAL (SELECT now() - interval '30 days' + i * interval '1 second' AS t) AS ts
"""


async def enqueue_pg(url: str, tenant_id: str, prefix: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(PG_ENQUEUE, prefix, tenant_id, count)
            await conn.execute("SELECT pg_notify('vai_action_runs', 'enqueued:')")
        # The benchmark server runs with autovacuum off; any normal server would have analyzed a table that just
        # grew by thousands of rows within a minute. Without statistics the planner reads the small partial indexes
        # with bitmap scans, which cannot skip the entries of runs that already left them (only plain index scans
        # mark those dead), and a fresh database measures at about half speed. The anchors get the same ANALYZE.
        await conn.execute("ANALYZE action_runs, action_run_events")
    finally:
        await conn.close()


async def add_history_pg(url: str, tenant_id: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(PG_HISTORY, tenant_id, count)
        await conn.execute("VACUUM ANALYZE action_runs")
    finally:
        await conn.close()


def prefix_range(prefix: str) -> tuple[str, str]:
    """``[prefix, upper)``: the ids that start with ``prefix``, as a range the primary key's btree can answer
    (``LIKE 'prefix%'`` cannot use it unless the collation is ``C``, so it scans the whole table — with a million
    history rows, that poll alone would eat a core and be measured as the history's cost)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


async def batch_rate_pg(url: str, prefix: str, count: int, timeout_s: float = 300) -> float:
    """Wait until the batch ``prefix`` is finished; runs per second from its enqueue to its last finish."""
    low, high = prefix_range(prefix)
    in_batch = "id >= $1 AND id < $2"
    conn = await asyncpg.connect(url)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            # Cheap to ask: the partial indexes hold only unfinished runs, however long the history.
            unfinished = await conn.fetchval(
                f"SELECT count(*) FROM action_runs WHERE status IN ('PENDING', 'RUNNING') AND {in_batch}", low, high
            )
            if unfinished == 0:
                break
            if loop.time() > deadline:
                raise TimeoutError(f"{unfinished}/{count} runs unfinished after {timeout_s}s")
            await asyncio.sleep(0.1)
        span, completed = await conn.fetchrow(
            "SELECT extract(epoch FROM max(finished_at) - min(created_at)),"
            f" count(*) FILTER (WHERE status = 'COMPLETED') FROM action_runs WHERE {in_batch}",
            low,
            high,
        )
        if completed != count:
            raise RuntimeError(f"only {completed}/{count} runs completed")
        return count / float(span)
    finally:
        await conn.close()


class WorkerProcesses:
    """``vai worker`` subprocesses against one database, started and stopped together."""

    def __init__(self, url: str, count: int, *, concurrency: int, settings: Mapping[str, object]) -> None:
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.settings = settings
        self.processes: list[asyncio.subprocess.Process] = []
        self._data_dir = tempfile.mkdtemp(prefix="vai-bench-")

    async def __aenter__(self) -> WorkerProcesses:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAI_")}
        env |= {"VAI_DATABASE_URL": self.url, "VAI_DATA_DIR": self._data_dir, "VAI_LOG_LEVEL": "WARNING"}
        env |= {f"VAI_{key.upper()}": str(value) for key, value in self.settings.items()}
        command = os.environ.get("VAI_BENCH_WORKER_COMMAND", "from virtuousai.cli.main import app; app()")
        for _ in range(self.count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                command,
                "worker",
                "--concurrency",
                str(self.concurrency),
                cwd=REPO_ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            self.processes.append(process)
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if not line.startswith(b"worker ready"):
                raise RuntimeError(f"worker did not start: {line!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.communicate(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
