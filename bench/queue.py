"""The ActionRun queue: throughput, dispatch latency and the effect of history, against anchors measured in the
same run on the same PostgreSQL server (each in a fresh database, dropped afterwards).

- throughput with 1 and 2 ``vai worker`` processes, 5,000 queued no-op runs (``echo``), enqueue → last finish;
- dispatch latency p50/p99: one idle worker, 200 runs created 50 ms apart through ``ActionRunService.create``,
  created_at → started_at;
- the same after 1,000,000 historical COMPLETED runs (one ``INSERT … SELECT generate_series``);
- procrastinate and DBOS draining 5,000 no-op jobs with one worker process (``bench/_queue_anchors.py``);
- the raw PostgreSQL limit: our claim and finish statements (claim batch + events, then per run the guarded UPDATE,
  its event and the NOTIFY, one transaction each) in a tight asyncpg loop on 4 connections, no Python runtime;
- SQLite throughput (one worker process; the file is filled before it starts, so first start → last finish).

Targets (reported, never asserted): ≥ 3x procrastinate and DBOS, ≥ 30 % of the raw limit, dispatch p50 ≤ 10 ms and
p99 ≤ 50 ms, history changes throughput by < 10 %.

    python -m bench queue
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from bench._queue_vai import (
    EMPTY_INPUTS_HASH,
    NOOP_KIND,
    REPO_ROOT,
    WorkerProcesses,
    add_history_pg,
    batch_rate_pg,
    enqueue_pg,
    prepare,
    scratch_database,
)

RUNS = 5_000
HISTORY = 1_000_000
LATENCY_RUNS = 200
LATENCY_GAP_S = 0.05
CONCURRENCY = 20  # per worker process, ours and the anchors'
WORKER_SETTINGS = {"per_org_concurrency": 100_000}  # one organization: its limit must not be what we measure
RAW_CONNECTIONS = 4


# -- ours ---------------------------------------------------------------------------------------------------------


async def throughput(url: str, tenant_id: str, processes: int, label: str) -> float:
    async with WorkerProcesses(url, processes, concurrency=CONCURRENCY, settings=WORKER_SETTINGS):
        prefix = f"run_{label}_"
        await enqueue_pg(url, tenant_id, prefix, RUNS)
        return await batch_rate_pg(url, prefix, RUNS)


async def dispatch_latency(url: str, tenant_id: str) -> tuple[float, float]:
    """p50 and p99 in milliseconds of created_at → started_at, one idle worker, runs created one by one."""
    from virtuousai.actions.registry import default_registry
    from virtuousai.actions.service import ActionRunService
    from virtuousai.actions.tables import ActionRun
    from virtuousai.store.engine import make_engine, make_sessionmaker
    from virtuousai.store.tenant import TenantContext

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    tenant = TenantContext(tenant_id=tenant_id)
    run_ids: list[str] = []
    try:
        async with WorkerProcesses(url, 1, concurrency=CONCURRENCY, settings=WORKER_SETTINGS):
            await asyncio.sleep(1.0)  # let the worker settle into waiting
            for n in range(LATENCY_RUNS):
                began = time.perf_counter()
                async with sessions() as session:
                    created = await ActionRunService(session, tenant, default_registry()).create(
                        kind=NOOP_KIND, inputs={"n": n}
                    )
                run_ids.append(created.run.id)
                await asyncio.sleep(max(0.0, LATENCY_GAP_S - (time.perf_counter() - began)))
            deadline = time.monotonic() + 60
            while True:
                async with sessions() as session:
                    rows = (
                        await session.execute(
                            sa.select(ActionRun.created_at, ActionRun.started_at).where(
                                ActionRun.id.in_(run_ids), ActionRun.finished_at.is_not(None)
                            )
                        )
                    ).all()
                if len(rows) == len(run_ids) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    latencies = sorted((started - created).total_seconds() * 1000 for created, started in rows)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


# -- the raw limit ------------------------------------------------------------------------------------------------

FINISH_SQL = """
UPDATE action_runs SET status = 'COMPLETED', output = '{}'::jsonb, error = NULL, updated_at = $3, finished_at = $3,
    lease_owner = NULL, lease_expires_at = NULL, last_event_seq = last_event_seq + 1
WHERE id = $1 AND tenant_id = $2 AND status = 'RUNNING' AND lease_token = $4
RETURNING last_event_seq
"""
EVENT_SQL = """
INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
VALUES ($1, $2, $3, $4, 'status', $5::jsonb, $6)
"""


def asyncpg_claim_sql() -> tuple[str, list[str]]:
    """Our PostgreSQL claim statement, with its ``:name`` parameters numbered for asyncpg."""
    from virtuousai.store.drivers.postgres import CLAIM_SQL

    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):(\w+)", number, CLAIM_SQL.element.text), names


async def raw_limit(url: str, tenant_id: str) -> float:
    await enqueue_pg(url, tenant_id, "run_raw_", RUNS)
    claim_sql, names = asyncpg_claim_sql()

    async def drain(conn: asyncpg.Connection, owner: str) -> None:
        while True:
            now = datetime.now(UTC)
            values = {"owner": owner, "batch": 10, "scan_limit": 40, "org_limit": 100_000, "now": now}
            values["lease_until"] = now + timedelta(seconds=30)
            async with conn.transaction():
                claimed = await conn.fetch(claim_sql, *(values[name] for name in names))
                await conn.executemany(
                    EVENT_SQL,
                    [
                        (f"evt_{secrets.token_hex(8)}", tenant_id, r["id"], r["last_event_seq"], "{}", now)
                        for r in claimed
                    ],
                )
            if not claimed:
                return
            for run in claimed:
                done = datetime.now(UTC)
                async with conn.transaction():
                    seq = await conn.fetchval(FINISH_SQL, run["id"], tenant_id, done, run["lease_token"])
                    await conn.execute(EVENT_SQL, f"evt_{secrets.token_hex(8)}", tenant_id, run["id"], seq, "{}", done)
                    await conn.execute("SELECT pg_notify('vai_action_runs', $1)", f"finished:{run['id']}")

    connections = [await asyncpg.connect(url) for _ in range(RAW_CONNECTIONS)]
    try:
        began = time.perf_counter()
        await asyncio.gather(*(drain(conn, f"raw-{i}") for i, conn in enumerate(connections)))
        return RUNS / (time.perf_counter() - began)
    finally:
        for conn in connections:
            await conn.close()


# -- anchors ------------------------------------------------------------------------------------------------------


async def anchor(library: str) -> float:
    async with scratch_database(library) as url:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._queue_anchors",
            library,
            url,
            str(RUNS),
            str(CONCURRENCY),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{library} anchor failed ({process.returncode})")
        return float(out.decode().split()[-1])


# -- SQLite -------------------------------------------------------------------------------------------------------

SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
SQLITE_ENQUEUE = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
INSERT INTO action_runs (id, tenant_id, kind, status, inputs, inputs_hash, priority, timeout_s, max_attempts, attempt,
                         origin, created_at, updated_at, available_at, lease_token, last_event_seq, requires_approval)
SELECT printf('run_sq_%09d', i), ?, '{NOOP_KIND}', 'PENDING', '{{}}', '{EMPTY_INPUTS_HASH}', 0, 60, 1, 0, 'api',
       {SQLITE_NOW}, {SQLITE_NOW}, {SQLITE_NOW}, 0, 1, 0
FROM seq
"""
SQLITE_EVENTS = f"""
INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
SELECT 'evt_' || substr(id, 5), tenant_id, id, 1, 'status', '{json.dumps({"from": None, "to": "PENDING"})}',
       created_at
FROM action_runs WHERE id LIKE 'run_sq_%'
"""


async def sqlite_throughput() -> float:
    with tempfile.TemporaryDirectory(prefix="vai-bench-sqlite-") as folder:
        path = Path(folder) / "vai.db"
        url = f"sqlite+aiosqlite:///{path}"
        tenant_id = await prepare(url)
        with sqlite3.connect(path) as db:
            db.execute(SQLITE_ENQUEUE, (RUNS, tenant_id))
            db.execute(SQLITE_EVENTS)
        async with WorkerProcesses(url, 1, concurrency=CONCURRENCY, settings=WORKER_SETTINGS):
            deadline = time.monotonic() + 300
            while True:
                with sqlite3.connect(path) as db:
                    (done,) = db.execute("SELECT count(*) FROM action_runs WHERE finished_at IS NOT NULL").fetchone()
                if done >= RUNS or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        with sqlite3.connect(path) as db:
            first, last, completed = db.execute(
                "SELECT min(started_at), max(finished_at), sum(status = 'COMPLETED') FROM action_runs"
            ).fetchone()
        if completed != RUNS:
            raise RuntimeError(f"SQLite: only {completed}/{RUNS} runs completed")
        span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        return RUNS / span


# -- the table ----------------------------------------------------------------------------------------------------


async def measure() -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    async with scratch_database("vai") as url:
        tenant_id = await prepare(url)
        one = await throughput(url, tenant_id, 1, "w1")
        two = await throughput(url, tenant_id, 2, "w2")
        p50, p99 = await dispatch_latency(url, tenant_id)
        began = time.perf_counter()
        await add_history_pg(url, tenant_id, HISTORY)
        history_s = time.perf_counter() - began
        one_h = await throughput(url, tenant_id, 1, "w1h")
        two_h = await throughput(url, tenant_id, 2, "w2h")
        p50_h, p99_h = await dispatch_latency(url, tenant_id)
    async with scratch_database("raw") as url:
        raw = await raw_limit(url, await prepare(url))
    procrastinate = await anchor("procrastinate")
    dbos = await anchor("dbos")
    sqlite = await sqlite_throughput()

    def rate(value: float) -> str:
        return f"{value:,.0f} runs/s"

    def ratio(value: float) -> str:
        return f"{value:.2f}x"

    rows += [
        ("throughput, 1 worker", rate(one), f"procrastinate {rate(procrastinate)}", ratio(one / procrastinate), "≥ 3x"),
        ("throughput, 1 worker", rate(one), f"DBOS {rate(dbos)}", ratio(one / dbos), "≥ 3x"),
        ("throughput, 2 workers", rate(two), f"raw PostgreSQL limit {rate(raw)}", f"{two / raw:.0%}", "≥ 30 %"),
        ("throughput, 1 worker", rate(one), f"raw PostgreSQL limit {rate(raw)}", f"{one / raw:.0%}", "≥ 30 %"),
        ("throughput, 2 workers", rate(two), f"1 worker {rate(one)}", ratio(two / one), "—"),
        ("dispatch latency p50", f"{p50:.1f} ms", "—", "—", "≤ 10 ms"),
        ("dispatch latency p99", f"{p99:.1f} ms", "—", "—", "≤ 50 ms"),
        (
            "throughput, 1 worker, 1M history",
            rate(one_h),
            f"no history {rate(one)}",
            f"{one_h / one - 1:+.0%}",
            "< ±10 %",
        ),
        (
            "throughput, 2 workers, 1M history",
            rate(two_h),
            f"no history {rate(two)}",
            f"{two_h / two - 1:+.0%}",
            "< ±10 %",
        ),
        ("dispatch p50, 1M history", f"{p50_h:.1f} ms", f"no history {p50:.1f} ms", ratio(p50_h / p50), "≤ 10 ms"),
        ("dispatch p99, 1M history", f"{p99_h:.1f} ms", f"no history {p99:.1f} ms", ratio(p99_h / p99), "≤ 50 ms"),
        ("SQLite throughput, 1 worker", rate(sqlite), f"PostgreSQL 1 worker {rate(one)}", ratio(sqlite / one), "—"),
    ]
    print(f"(1M history rows inserted in {history_s:.1f} s)")
    return rows


def main() -> None:
    began = time.perf_counter()
    rows = asyncio.run(measure())
    header = ("measure", "ours", "anchor (same run)", "ratio", "target")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    total_s = time.perf_counter() - began
    print(f"{RUNS:,} runs per throughput measure, concurrency {CONCURRENCY} per worker process; total {total_s:.0f} s")


if __name__ == "__main__":
    main()
