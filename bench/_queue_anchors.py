"""The anchors of ``bench/queue.py``: procrastinate and DBOS doing the same no-op work, each in a process of its
own (``python -m bench._queue_anchors <procrastinate|dbos> <url> <runs> <concurrency>`` prints runs per second).

Both get their queue filled first (and ANALYZEd, as ours), then one worker process drains it; the clock runs from
the worker's start to the last job finished, as for ours (enqueue → last finish, with the workers already waiting).
"""

from __future__ import annotations

import asyncio
import sys
import time


async def analyze(url: str) -> None:
    """What autovacuum would have done on a normal server (the benchmark's has it off): ours gets the same."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def procrastinate_rate(url: str, runs: int, concurrency: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, runs, 1000):
            await noop.batch_defer_async(*({} for _ in range(start, min(start + 1000, runs))))
        await analyze(url)
        began = time.perf_counter()
        await app.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False)
        elapsed = time.perf_counter() - began
    return runs / elapsed


def dbos_rate(url: str, runs: int, concurrency: int) -> float:
    from dbos import DBOS, DBOSClient

    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    DBOS(config={"name": "bench", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.workflow()
    def noop(i: int) -> int:
        return i

    DBOS.launch()  # creates the system database schema
    client = DBOSClient(system_database_url=url)
    handles = [client.enqueue({"workflow_name": noop.__qualname__, "queue_name": "bench"}, i) for i in range(runs)]
    asyncio.run(analyze(url))
    began = time.perf_counter()
    DBOS.register_queue("bench", worker_concurrency=concurrency, polling_interval_sec=0.01)
    for handle in handles:
        handle.get_result(polling_interval_sec=0.01)
    elapsed = time.perf_counter() - began
    client.destroy()
    DBOS.destroy()
    return runs / elapsed


def main() -> None:
    library, url, runs, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if library == "procrastinate":
        rate = asyncio.run(procrastinate_rate(url, runs, concurrency))
    elif library == "dbos":
        rate = dbos_rate(url, runs, concurrency)
    else:
        raise SystemExit(f"unknown anchor {library!r}")
    print(f"{rate:.3f}")


if __name__ == "__main__":
    main()
