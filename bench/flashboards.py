"""Flashboard data: the demo flashboard's 6 tiles over the demo ETL's gold table, run concurrently
(``flashboards.service.run_tiles``, the code ``GET /api/v1/flashboards/{id}/data`` runs), against the slowest
tile run alone. Target: total ≤ 1.5 x the slowest tile.

The demo shop database is generated and the demo ETL's steps run through the real kinds first. One organization may
hold all but one of the engine's query processes, so 6 tiles run at once only with 7 processes
(``VAI_QUERY_PROCESSES=7``); the default 3 (2 for one organization) is measured too. Medians of
``VAI_BENCH_FLASHBOARD_ROUNDS`` (default 15) rounds after 3 warm-up rounds.

    python -m bench flashboards
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from virtuousai.actions.registry import default_registry
from virtuousai.data.demo_data import generate_shop_database
from virtuousai.data.demo_etl import DEMO_ETL, demo_connections, shop_path
from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.flashboards.demo import DEMO_FLASHBOARD
from virtuousai.flashboards.models import TileOut
from virtuousai.flashboards.service import run_tile, run_tiles
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store.tenant import TenantContext

ROUNDS = int(os.environ.get("VAI_BENCH_FLASHBOARD_ROUNDS", "15"))
WARMUP = 3
TENANT = "org_bench"
ROW_CAP = 5_000


async def _run_etl(data_dir: Path) -> None:
    connections = {
        f"slug:{c['slug']}": ResolvedConnection(
            id=f"conn_{c['slug'].replace('-', '_')}",
            slug=c["slug"],
            provider=c["provider"],
            config=c["config"],
            secrets={},
        )
        for c in demo_connections(data_dir)
    }

    async def resolve(ref: str) -> ResolvedConnection:
        return connections[ref]

    ctx = ActionContext(run_id="run_bench", tenant=TenantContext(tenant_id=TENANT), data_dir=data_dir, _resolve=resolve)
    for step in DEMO_ETL["steps"]:
        kind = default_registry().get(step["action"])
        await kind.execute(ctx, kind.input_model.model_validate(step["inputs"]))


async def _median_ms(make: object, rounds: int) -> float:
    times = []
    for i in range(WARMUP + rounds):
        started = time.perf_counter()
        await make()  # type: ignore[operator]
        if i >= WARMUP:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _measure(lake_dir: Path, processes: int, tiles: list[TileOut]) -> tuple[list[float], float, list[float]]:
    """Each tile alone and all together (median wall ms), and each tile's time inside its query process (the
    statement on its locked DuckDB and its rows to JSON: ``elapsed_ms``), median over the rounds alone."""
    limits = QueryLimits()  # the settings' defaults
    engine = LakeQueryEngine(lake_dir, limits, processes=processes)
    inside: dict[int, list[float]] = {i: [] for i in range(len(tiles))}

    async def one(i: int, tile: TileOut) -> None:
        inside[i].append((await run_tile(engine, TENANT, i, tile, ROW_CAP)).elapsed_ms)

    try:
        engine.warm()
        _, _ = await run_tiles(engine, TENANT, tiles, ROW_CAP)  # every process has the organization's instance
        alone = [await _median_ms(lambda i=i, t=t: one(i, t), ROUNDS) for i, t in enumerate(tiles)]
        together = await _median_ms(lambda: run_tiles(engine, TENANT, tiles, ROW_CAP), ROUNDS)
        results, _ = await run_tiles(engine, TENANT, tiles, ROW_CAP)
        assert all(r.error is None for r in results), [r.error for r in results if r.error]
        return alone, together, [statistics.median(inside[i]) for i in range(len(tiles))]
    finally:
        engine.close()


async def _main() -> None:
    with tempfile.TemporaryDirectory(prefix="vai-bench-flashboards-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        generate_shop_database(shop_path(data_dir))
        await _run_etl(data_dir)
        print(f"demo shop generated and its ETL run in {time.perf_counter() - started:.1f} s")
        tiles = [TileOut(**t, columns=[]) for t in DEMO_FLASHBOARD["tiles"]]
        print(f"{'processes':>9} {'slowest tile alone ms':>22} {'6 tiles together ms':>20} {'ratio':>6} target ≤ 1.5")
        for processes in (7, 3):
            alone, together, inside = await _measure(data_dir / "lake", processes, tiles)
            slowest = max(alone)
            print(f"{processes:>9} {slowest:>22.2f} {together:>20.2f} {together / slowest:>6.2f}")
        print("tiles alone (ms):", ", ".join(f"{t.title}: {a:.2f}" for t, a in zip(tiles, alone, strict=True)))
        print("of which in the query process (ms):", ", ".join(f"{i:.2f}" for i in inside))
        # The tiles' own work, spread perfectly over every core with nothing else running: no schedule does better.
        cores = os.cpu_count() or 1
        floor = max(max(inside), sum(inside) / cores)
        print(
            f"the tiles' own work: {sum(inside):.2f} ms in all; on {cores} cores at best {floor:.2f} ms together, "
            f"{floor / slowest:.2f}x the slowest tile alone"
        )


def main() -> None:
    asyncio.run(_main())
