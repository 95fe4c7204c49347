"""CPU time of processes, read from ``/proc`` (Linux): what a side of a comparison cost, whatever the machine's other
load did to its wall time.

The machine the benchmarks run on is shared, so wall times move by tens of percent from run to run; CPU seconds move
much less. ``postgres_backends`` names the server processes that serve one database, so the database's share of a
run can be counted too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# The server processes of the connection's database, but for the connection's own.
POSTGRES_BACKENDS_SQL = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds the processes have used so far (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                # The command name (field 2) is in parentheses and may hold spaces: split after it.
                fields = stat.read().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / _TICKS_PER_SECOND
