"""Extraction and lake-query overhead, each against its anchor measured in the same run.

1. A 1,000,000-row SQLite table → bronze parquet through the ``dlt_extract`` kind, against plain dlt doing the same
   (same source, pyarrow backend, filesystem destination, parquet). Target: at least 0.9 of plain dlt's rows per second.
2. A group-by over 10,000,000 rows: the guard plus the locked, pooled DuckDB (``LakeQueryEngine.query``) and the
   whole ``POST /api/v1/query`` (HTTP, auth, guard, execute) against raw DuckDB over the same parquet files.
   Target: ≤ 5 % or ≤ 2 ms overhead. Rounds: ``VAI_BENCH_QUERY_ROUNDS`` (default 25).

    python -m bench extract
    VAI_BENCH_EXTRACT_PARTS=query python -m bench extract     # only part 2 (or =extract: only part 1)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

EXTRACT_ROWS = 1_000_000
QUERY_ROWS = 10_000_000
GROUP_BY = "SELECT category, count(*) AS n, sum(amount) AS total FROM {table} GROUP BY category ORDER BY category"


def _make_source(path: Path) -> None:
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT i AS id, 'customer-' || (i % 5000) AS customer, (i % 997) * 1.25 AS amount, "
        f"CASE i % 4 WHEN 0 THEN 'paid' WHEN 1 THEN 'shipped' WHEN 2 THEN 'refunded' ELSE 'delivered' END AS status "
        f"FROM range({EXTRACT_ROWS}) t(i)) TO '{path.with_suffix('.csv')}' (HEADER)"
    )
    con.close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, status TEXT)")
        con = duckdb.connect()
        rows = con.execute(f"SELECT * FROM read_csv('{path.with_suffix('.csv')}')").fetchall()
        con.close()
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)


def _plain_dlt(source: Path, work: Path) -> float:
    import dlt
    import sqlalchemy as sa
    from dlt.sources.sql_database import sql_table

    engine = sa.create_engine(f"sqlite:///{source}")
    resource = sql_table(credentials=engine, table="orders", backend="pyarrow", chunk_size=50_000)
    pipeline = dlt.pipeline(
        pipeline_name="plain",
        pipelines_dir=str(work / "plain-pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=str(work / "plain-destination")),
        dataset_name="shop",
    )
    started = time.perf_counter()
    pipeline.run(resource, loader_file_format="parquet")
    return time.perf_counter() - started


def _our_extract(source: Path, work: Path) -> float:
    from virtuousai.actions.context import ActionContext, ResolvedConnection
    from virtuousai.data.kinds import DltExtractInput, dlt_extract
    from virtuousai.store.tenant import TenantContext

    connection = ResolvedConnection(
        id="conn_bench", slug="bench", provider="sqlite", config={"path": str(source)}, secrets={}
    )

    async def resolve(ref: str) -> ResolvedConnection:
        return connection

    ctx = ActionContext(run_id="run_bench", tenant=TenantContext("org_bench"), data_dir=work / "var", _resolve=resolve)
    inputs = DltExtractInput.model_validate(
        {"connection": "c", "dataset": "shop", "source": {"type": "sql_database", "tables": ["orders"]}}
    )

    async def extract() -> Any:
        return await dlt_extract.execute(ctx, inputs)

    started = time.perf_counter()
    output = asyncio.run(extract())
    elapsed = time.perf_counter() - started
    assert output.rows == {"orders": EXTRACT_ROWS}, output.rows
    return elapsed


@dataclass(frozen=True)
class QueryRow:
    label: str
    best_s: float
    anchor_best_s: float
    median_overhead_s: float  # median over rounds of (this run - the same round's raw run)
    median_cpu_overhead_s: float  # the same in process CPU time (all threads): the extra work, whatever the load


def _query_bench(work: Path) -> list[QueryRow]:
    import httpx

    from virtuousai.api.app import create_app
    from virtuousai.config import Settings
    from virtuousai.data.engine import LakeQueryEngine, QueryLimits
    from virtuousai.data.lake import TableRef, TenantLake
    from virtuousai.orgs.service import create_organization
    from virtuousai.store import migrate
    from virtuousai.store.engine import make_engine

    settings = Settings(data_dir=work / "qvar", database_url=f"sqlite+aiosqlite:///{work / 'q.db'}")

    async def setup() -> tuple[str, str]:
        engine = make_engine(settings.resolved_database_url)
        await migrate.upgrade(engine)
        await engine.dispose()
        app = create_app(settings)
        async with app.router.lifespan_context(app), app.state.sessions() as session:
            created = await create_organization(session, "Bench", "bench@example.com")
        return created.organization.id, created.key.plaintext

    org_id, api_key = asyncio.run(setup())
    lake = TenantLake(settings.lake_dir, org_id)
    staging = lake.staging_dir("bench")
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT i AS id, 'cat-' || (i % 50) AS category, (i % 1000) * 0.5 AS amount "
        f"FROM range({QUERY_ROWS}) t(i)) TO '{staging / 'sales.parquet'}' (FORMAT parquet)"
    )
    con.close()
    manifest = lake.publish(TableRef("gold", "bench", "sales"), [staging / "sales.parquet"], "replace").manifest
    files = [str(f) for f in lake.absolute_files(manifest)]
    threads = settings.query_threads

    raw = duckdb.connect(config={"threads": threads, "memory_limit": settings.query_memory_limit})
    raw_sql = GROUP_BY.format(table=f"read_parquet({files!r})")
    raw.execute(raw_sql).fetchall()  # warm the file cache for everyone
    engine = LakeQueryEngine(settings.lake_dir, QueryLimits.from_settings(settings))
    ours_sql = GROUP_BY.format(table="gold.bench.sales")
    engine.query(org_id, ours_sql)

    # Interleaved: the machine is shared, so each round measures all three back to back under the same load, in
    # an order that rotates (whatever runs first or last in a round gets no systematic edge). Two estimates per
    # row: the best of N, and the median of each round's own overhead over that round's raw run, which a burst of
    # someone else's load in one round cannot move.
    repeat = int(os.environ.get("VAI_BENCH_QUERY_ROUNDS", "25"))
    timings: dict[str, list[float]] = {"raw": [], "engine": [], "http": []}
    cpu: dict[str, list[float]] = {"raw": [], "engine": [], "http": []}  # process CPU time: unmoved by waiting

    async def rounds() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers = {"Authorization": f"Bearer {api_key}"}

                async def run_raw() -> None:
                    raw.execute(raw_sql).fetchall()

                async def run_engine() -> None:
                    engine.query(org_id, ours_sql)

                async def run_http() -> None:
                    response = await client.post("/api/v1/query", json={"sql": ours_sql}, headers=headers)
                    response.raise_for_status()

                runs: dict[str, Callable[[], Awaitable[None]]] = {
                    "raw": run_raw,
                    "engine": run_engine,
                    "http": run_http,
                }
                await run_http()  # warm the app's own engine
                order = list(runs)
                for index in range(repeat):
                    for key in order[index % 3 :] + order[: index % 3]:
                        started, cpu_started = time.perf_counter(), time.process_time()
                        await runs[key]()
                        timings[key].append(time.perf_counter() - started)
                        cpu[key].append(time.process_time() - cpu_started)
            app.state.lake_engine.close()

    asyncio.run(rounds())
    engine.close()
    raw.close()

    def paired_median(series: dict[str, list[float]], key: str) -> float:
        return statistics.median(ours - anchor for ours, anchor in zip(series[key], series["raw"], strict=True))

    def row(label: str, key: str) -> QueryRow:
        return QueryRow(
            label, min(timings[key]), min(timings["raw"]), paired_median(timings, key), paired_median(cpu, key)
        )

    return [
        row("raw DuckDB group-by, 10M rows (anchor)", "raw"),
        row("guard + locked pooled DuckDB", "engine"),
        row("POST /api/v1/query (HTTP, auth, guard, execute)", "http"),
    ]


def _parts() -> set[str]:
    """Which parts to run: ``VAI_BENCH_EXTRACT_PARTS`` = ``extract``, ``query`` or both (the default)."""
    wanted = {p.strip() for p in os.environ.get("VAI_BENCH_EXTRACT_PARTS", "extract,query").split(",") if p.strip()}
    unknown = wanted - {"extract", "query"}
    if unknown or not wanted:
        raise SystemExit(f"VAI_BENCH_EXTRACT_PARTS: expected extract and/or query, got {sorted(unknown) or 'nothing'}")
    return wanted


def main() -> None:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    parts = _parts()
    work = Path(tempfile.mkdtemp(prefix="vai-bench-extract-"))
    extract_s: tuple[float, float] | None = None
    query_rows: list[QueryRow] = []
    try:
        if "extract" in parts:
            source = work / "source.db"
            _make_source(source)
            extract_s = (_plain_dlt(source, work), _our_extract(source, work))
        if "query" in parts:
            query_rows = _query_bench(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'measurement':<52} {'value':>14} {'ratio':>8}  target")
    if extract_s is not None:
        plain_rate, ours_rate = EXTRACT_ROWS / extract_s[0], EXTRACT_ROWS / extract_s[1]
        print(f"{'plain dlt, 1M SQLite rows → parquet (anchor)':<52} {plain_rate:>10,.0f} r/s {1.0:>8.2f}")
        print(
            f"{'dlt_extract, 1M SQLite rows → bronze':<52} {ours_rate:>10,.0f} r/s "
            f"{ours_rate / plain_rate:>8.2f}  ≥ 0.90"
        )
    for query in query_rows:
        target = ""
        if query.label != query_rows[0].label:
            best_ms = (query.best_s - query.anchor_best_s) * 1000
            median_ms = query.median_overhead_s * 1000
            median_pct = query.median_overhead_s / query.anchor_best_s * 100
            cpu_ms = query.median_cpu_overhead_s * 1000
            target = (
                f"≤ 1.05 or ≤ 2 ms: best {best_ms:+.1f} ms; median per round {median_ms:+.1f} ms ({median_pct:+.1f} %),"
                f" CPU {cpu_ms:+.1f} ms"
            )
        ratio = query.best_s / query.anchor_best_s
        print(f"{query.label:<52} {query.best_s * 1000:>11.1f} ms {ratio:>8.2f}  {target}")


if __name__ == "__main__":
    main()
