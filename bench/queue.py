"""The ActionRun queue: throughput, dispatch latency and the effect of history, against anchors measured in the
same run on the same PostgreSQL server (each in a fresh database, dropped afterwards).

- throughput with 1 and 2 ``vai worker`` processes, 5,000 queued no-op runs (``echo``), enqueue → last finish;
- dispatch latency p50/p99: one idle worker, 200 runs created 50 ms apart through ``ActionRunService.create``,
  created_at → started_at;
- the same after 1,000,000 historical COMPLETED runs (one ``INSERT … SELECT generate_series``);
- procrastinate and DBOS draining 5,000 no-op jobs with one worker process (``bench/_queue_anchors.py``);
- the raw PostgreSQL limit: our own claim and outcome statements (a batch of 10 claimed with its events in one
  statement, then the batch's outcomes, events and NOTIFYs in one statement) in a tight asyncpg loop on 4
  connections, with no Python runtime around them (see ``raw_limit``);
- SQLite throughput (one worker process; the file is filled before it starts, so first start → last finish).

Targets (reported, never asserted): ≥ 3x procrastinate and DBOS, ≥ 30 % of the raw limit, dispatch p50 ≤ 10 ms and
p99 ≤ 50 ms, history changes throughput by < 10 %.

    python -m bench queue
"""

from __future__ import annotations

import asyncio
import json
import os
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

RUNS = int(os.environ.get("VAI_BENCH_QUEUE_RUNS", "5000"))  # override only to iterate quickly
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
    from virtuousai.runtime.tables import ActionRun
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
#
# Our own hot statements, taken verbatim from the PostgreSQL driver, in a tight asyncpg loop with no Python runtime
# around them: claim a batch (the claim statement, which also inserts the RUNNING events), then record the whole
# batch's outcomes (the outcome statement: the fenced UPDATE, the status events and the NOTIFYs), each statement on
# its own (autocommit, as the worker runs them). A batch is RAW_BATCH runs, the worker's claim size at concurrency
# 20; the worker's group commit finishes about as many per statement. So the anchor is what the database can do
# with exactly the work we ask of it; the gap to it is the worker's own cost (Python, asyncio, SQLAlchemy).

RAW_BATCH = 10


def asyncpg_sql(statement: sa.TextClause) -> tuple[str, list[str]]:
    """A driver statement with its ``:name`` parameters numbered for asyncpg, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):(\w+)", number, statement.text), names


async def raw_limit(url: str, tenant_id: str) -> float:
    from virtuousai.store.drivers.postgres import CHANNEL, CLAIM_SQL, FINISH_SQL

    await enqueue_pg(url, tenant_id, "run_raw_", RUNS)
    claim_sql, claim_names = asyncpg_sql(CLAIM_SQL.element)
    finish_sql, finish_names = asyncpg_sql(FINISH_SQL)

    def event_id() -> str:
        return f"evt_{secrets.token_hex(11)}"

    async def drain(conn: asyncpg.Connection, owner: str) -> None:
        while True:
            now = datetime.now(UTC)
            claim = {
                "owner": owner,
                "batch": RAW_BATCH,
                "scan_limit": RAW_BATCH * 4,
                "org_limit": 100_000,
                "now": now,
                "lease_until": now + timedelta(seconds=30),
                "event_ids": [event_id() for _ in range(RAW_BATCH)],
                "event_data": json.dumps({"from": "PENDING", "to": "RUNNING", "worker": owner}),
            }
            claimed = await conn.fetch(claim_sql, *(claim[name] for name in claim_names))
            if not claimed:
                return
            done = datetime.now(UTC)
            finish = {
                "now": done,
                "channel": CHANNEL,
                "ids": [r["id"] for r in claimed],
                "tenant_ids": [r["tenant_id"] for r in claimed],
                "tokens": [r["lease_token"] for r in claimed],
                "statuses": ["COMPLETED"] * len(claimed),
                "outputs": ["{}"] * len(claimed),
                "errors": [None] * len(claimed),
                "available_ats": [None] * len(claimed),
                "finished_ats": [done] * len(claimed),
                "attempt_deltas": [0] * len(claimed),
                "event_ids": [event_id() for _ in claimed],
                "event_data": [json.dumps({"from": "RUNNING", "to": "COMPLETED", "attempt": 1})] * len(claimed),
                "wakeups": [f"finished:{r['id']}:{tenant_id}:api" for r in claimed],
            }
            await conn.fetch(finish_sql, *(finish[name] for name in finish_names))

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


PARTS = ("ours", "latency", "history", "raw", "procrastinate", "dbos", "sqlite")


def wanted_parts() -> set[str]:
    """``VAI_BENCH_QUEUE_PARTS=ours,raw`` measures only those parts (to iterate quickly); default: all of them."""
    chosen = {part.strip() for part in os.environ.get("VAI_BENCH_QUEUE_PARTS", "").split(",") if part.strip()}
    unknown = chosen - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown VAI_BENCH_QUEUE_PARTS {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return chosen or set(PARTS)


async def measure() -> list[tuple[str, str, str, str, str]]:
    parts = wanted_parts()
    got: dict[str, float] = {}
    if parts & {"ours", "latency", "history"}:
        async with scratch_database("vai") as url:
            tenant_id = await prepare(url)
            if "ours" in parts or "history" in parts:
                got["one"] = await throughput(url, tenant_id, 1, "w1")
                got["two"] = await throughput(url, tenant_id, 2, "w2")
            if "latency" in parts or "history" in parts:
                got["p50"], got["p99"] = await dispatch_latency(url, tenant_id)
            if "history" in parts:
                began = time.perf_counter()
                await add_history_pg(url, tenant_id, HISTORY)
                print(f"(1M history rows inserted in {time.perf_counter() - began:.1f} s)")
                got["one_h"] = await throughput(url, tenant_id, 1, "w1h")
                got["two_h"] = await throughput(url, tenant_id, 2, "w2h")
                got["p50_h"], got["p99_h"] = await dispatch_latency(url, tenant_id)
    if "raw" in parts:
        async with scratch_database("raw") as url:
            got["raw"] = await raw_limit(url, await prepare(url))
    for library in ("procrastinate", "dbos"):
        if library in parts:
            got[library] = await anchor(library)
    if "sqlite" in parts:
        got["sqlite"] = await sqlite_throughput()
    return table(got)


def table(got: dict[str, float]) -> list[tuple[str, str, str, str, str]]:
    """The rows whose measures were taken in this run."""

    def rate(value: float) -> str:
        return f"{value:,.0f} runs/s"

    def ratio(value: float) -> str:
        return f"{value:.2f}x"

    def ms(value: float) -> str:
        return f"{value:.1f} ms"

    def change(value: float) -> str:
        return f"{value:+.0%}"

    def share(value: float) -> str:
        return f"{value:.0%}"

    # (measure, ours, its anchor's label, anchor, how the two compare, target)
    specs = [
        ("throughput, 1 worker", "one", "procrastinate", "procrastinate", rate, lambda a, b: ratio(a / b), "≥ 3x"),
        ("throughput, 1 worker", "one", "DBOS", "dbos", rate, lambda a, b: ratio(a / b), "≥ 3x"),
        ("throughput, 2 workers", "two", "procrastinate", "procrastinate", rate, lambda a, b: ratio(a / b), "≥ 3x"),
        ("throughput, 2 workers", "two", "DBOS", "dbos", rate, lambda a, b: ratio(a / b), "≥ 3x"),
        ("throughput, 1 worker", "one", "raw PostgreSQL limit", "raw", rate, lambda a, b: share(a / b), "≥ 30 %"),
        ("throughput, 2 workers", "two", "raw PostgreSQL limit", "raw", rate, lambda a, b: share(a / b), "≥ 30 %"),
        ("throughput, 2 workers", "two", "1 worker", "one", rate, lambda a, b: ratio(a / b), "—"),
        ("dispatch latency p50", "p50", None, None, ms, None, "≤ 10 ms"),
        ("dispatch latency p99", "p99", None, None, ms, None, "≤ 50 ms"),
        (
            "throughput, 1 worker, 1M history",
            "one_h",
            "no history",
            "one",
            rate,
            lambda a, b: change(a / b - 1),
            "< ±10 %",
        ),
        (
            "throughput, 2 workers, 1M history",
            "two_h",
            "no history",
            "two",
            rate,
            lambda a, b: change(a / b - 1),
            "< ±10 %",
        ),
        ("dispatch p50, 1M history", "p50_h", "no history", "p50", ms, lambda a, b: ratio(a / b), "≤ 10 ms"),
        ("dispatch p99, 1M history", "p99_h", "no history", "p99", ms, lambda a, b: ratio(a / b), "≤ 50 ms"),
        ("SQLite throughput, 1 worker", "sqlite", "PostgreSQL 1 worker", "one", rate, lambda a, b: ratio(a / b), "—"),
    ]
    rows: list[tuple[str, str, str, str, str]] = []
    for measure_name, ours, label, anchor_key, fmt, compare, target in specs:
        if ours not in got:
            continue
        if anchor_key is None or compare is None or label is None:
            rows.append((measure_name, fmt(got[ours]), "—", "—", target))
        elif anchor_key in got:
            rows.append(
                (
                    measure_name,
                    fmt(got[ours]),
                    f"{label} {fmt(got[anchor_key])}",
                    compare(got[ours], got[anchor_key]),
                    target,
                )
            )
    for key in ("raw", "procrastinate", "dbos"):  # an anchor measured alone still gets a row
        if key in got and "one" not in got and "two" not in got:
            rows.append((f"anchor: {key}", "—", rate(got[key]), "—", "—"))
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
