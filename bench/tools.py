"""``generate_query`` with given SQL against the lake query it wraps (``POST /api/v1/query``'s engine call).

Both run the same SQL through the same process-isolated engine, interleaved, in one process: what differs is the
tool's own work (validating its inputs, the guard, building and validating its output model). The anchor is the
engine call the API route makes (``LakeQueryEngine.run_async`` after the guard); the HTTP layer is measured in
bench/extract.py. Target: ≤ 5 % or ≤ 3 ms over it.

    python -m bench tools       # VAI_BENCH_TOOLS_ROUNDS (default 200), VAI_BENCH_TOOLS_ROWS (default 100000)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.data.guard import guard_sql
from virtuousai.data.lake import TableRef, TenantLake
from virtuousai.data.query_tools import GenerateQueryInput, generate_query
from virtuousai.runtime.context import ActionContext, SharedResources
from virtuousai.store.tenant import TenantContext

TENANT = "org_bench"
SQL = "SELECT category, count(*) AS n, sum(amount) AS total FROM bronze.shop.orders GROUP BY category ORDER BY 1"


def _lake(root: Path, rows: int) -> None:
    lake = TenantLake(root, TENANT)
    staging = lake.staging_dir("bench")
    table = pa.table(
        {
            "id": list(range(rows)),
            "category": [f"c{i % 12}" for i in range(rows)],
            "amount": [i % 97 for i in range(rows)],
        }
    )
    pq.write_table(table, staging / "rows.parquet")
    lake.publish(TableRef("bronze", "shop", "orders"), [staging / "rows.parquet"], "replace", load_id="b", run_id="b")
    lake.drop_staging(staging)


async def _measure(engine: LakeQueryEngine, rounds: int) -> tuple[list[float], list[float]]:
    shared = SharedResources()
    shared.get(LakeQueryEngine, lambda: engine)
    ctx = ActionContext(run_id="run_bench", tenant=TenantContext(tenant_id=TENANT), shared=shared)
    inputs = {"question": "Totals by category?", "sql": SQL}
    anchor: list[float] = []
    tool: list[float] = []
    for _ in range(10):  # warm: both processes hold the instance, the guard's memo has the text
        await engine.run_async(TENANT, guard_sql(SQL))
        await generate_query.execute(ctx, GenerateQueryInput.model_validate(inputs))
    for _ in range(rounds):
        started = time.perf_counter()
        await engine.run_async(TENANT, guard_sql(SQL), limit=engine.limits.row_cap)
        anchor.append(time.perf_counter() - started)
        started = time.perf_counter()
        output = await generate_query.execute(ctx, GenerateQueryInput.model_validate(inputs))
        generate_query.output_model.model_validate(output.model_dump())
        tool.append(time.perf_counter() - started)
    return anchor, tool


def main() -> None:
    rounds = int(os.environ.get("VAI_BENCH_TOOLS_ROUNDS", "200"))
    rows = int(os.environ.get("VAI_BENCH_TOOLS_ROWS", "100000"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        _lake(root, rows)
        engine = LakeQueryEngine(root, QueryLimits(row_cap=10_000, timeout_s=30, memory_limit="1GB", threads=2))
        try:
            anchor, tool = asyncio.run(_measure(engine, rounds))
        finally:
            engine.close()
    a, t = statistics.median(anchor) * 1000, statistics.median(tool) * 1000
    print(f"{'':28}{'median ms':>10}{'p90 ms':>10}")
    print(f"{'engine (POST /query core)':28}{a:>10.2f}{sorted(anchor)[int(0.9 * len(anchor))] * 1000:>10.2f}")
    print(f"{'generate_query (given sql)':28}{t:>10.2f}{sorted(tool)[int(0.9 * len(tool))] * 1000:>10.2f}")
    print(f"overhead: {t - a:+.2f} ms ({(t / a - 1) * 100:+.1f} %); target ≤ 5 % or ≤ 3 ms")
