"""The DBOS side of ``bench/automations.py``, run in its own process (DBOS is a process-wide singleton with threads).

    python -m bench._automations_dbos SYSTEM_DATABASE_URL STEPS ROUNDS

Prints one JSON line: the wall time of each round of a workflow of ``STEPS`` sequential no-op steps (after a warm-up
workflow), and the CPU seconds of each round in this process and in the PostgreSQL processes serving its database.
DBOS checkpoints every step's output to its system database, as our engine records every step.
"""

from __future__ import annotations

import json
import sys
import time

import psycopg
from dbos import DBOS

from bench._cpu import POSTGRES_BACKENDS_SQL, cpu_seconds


@DBOS.step()
def noop(index: int) -> int:
    return index


@DBOS.workflow()
def chain(steps: int) -> int:
    total = 0
    for index in range(steps):
        total += noop(index)
    return total


def main() -> None:
    url, steps, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    DBOS(config={"name": "vai-bench-chain", "system_database_url": url, "run_admin_server": False})
    DBOS.launch()
    try:
        chain(10)  # warm-up: connections, tables, code paths
        seconds, cpu, postgres_cpu = [], [], []
        with psycopg.connect(url, autocommit=True) as watch:
            for _ in range(rounds):
                watch.execute("ANALYZE")  # as bench/automations.py does before each of our parts
                backends = [row[0] for row in watch.execute(POSTGRES_BACKENDS_SQL).fetchall()]
                started, cpu_started, postgres_started = time.perf_counter(), time.process_time(), cpu_seconds(backends)
                chain(steps)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                postgres_cpu.append(cpu_seconds(backends) - postgres_started)
    finally:
        DBOS.destroy()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "postgres_cpu": postgres_cpu}))


if __name__ == "__main__":
    main()
