"""The DBOS side of ``bench/automations.py``, run in its own process (DBOS is a process-wide singleton with threads).

    python -m bench._automations_dbos SYSTEM_DATABASE_URL STEPS

Prints ``ready`` once DBOS is up and a warm-up workflow has run. Then, for each line read from stdin, runs one round
— a workflow of ``STEPS`` sequential no-op steps — and prints one JSON line: its wall time, and the CPU seconds it
took in this process and in the PostgreSQL processes serving its database. Ends at end of input. Driven a round at
a time, so that ``bench/automations.py`` can interleave these rounds with its own: the machine's drift then touches
both sides alike.

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
    url, steps = sys.argv[1], int(sys.argv[2])
    DBOS(config={"name": "vai-bench-chain", "system_database_url": url, "run_admin_server": False})
    DBOS.launch()
    try:
        chain(10)  # warm-up: connections, tables, code paths
        print("ready", flush=True)
        with psycopg.connect(url, autocommit=True) as watch:
            for _ in sys.stdin:
                watch.execute("ANALYZE")  # as bench/automations.py does before each of our parts
                backends = [row[0] for row in watch.execute(POSTGRES_BACKENDS_SQL).fetchall()]
                started, cpu_started, postgres_started = time.perf_counter(), time.process_time(), cpu_seconds(backends)
                chain(steps)
                figures = {
                    "seconds": time.perf_counter() - started,
                    "cpu": time.process_time() - cpu_started,
                    "postgres_cpu": cpu_seconds(backends) - postgres_started,
                }
                print(json.dumps(figures), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
