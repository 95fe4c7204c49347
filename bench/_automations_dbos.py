"""The DBOS side of ``bench/automations.py``, run in its own process (DBOS is a process-wide singleton with threads).

    python -m bench._automations_dbos SYSTEM_DATABASE_URL STEPS ROUNDS

Prints one JSON line: the wall time of each round of a workflow of ``STEPS`` sequential no-op steps (after a warm-up
workflow). DBOS checkpoints every step's output to its system database, as our engine records every step.
"""

from __future__ import annotations

import json
import sys
import time

from dbos import DBOS


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
        seconds = []
        for _ in range(rounds):
            started = time.perf_counter()
            chain(steps)
            seconds.append(time.perf_counter() - started)
    finally:
        DBOS.destroy()
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
