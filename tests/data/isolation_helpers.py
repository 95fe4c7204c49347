"""Looking at query processes from the outside, through /proc (Linux), as an operator would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def query_processes(marker: str) -> set[int]:
    """Ids of the running query processes whose command line holds ``marker`` (their lake folder)."""
    found = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it ended meanwhile
            continue
        if "virtuousai.data.isolation" in cmdline and marker in cmdline and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status_kb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (``VmRSS``, ``VmHWM``, ``VmSize``)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_ticks(pid: int) -> int:
    """User + system CPU clock ticks the process has used."""
    fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def address_space_limit(pid: int) -> int | None:
    """The process's RLIMIT_AS soft limit in bytes (None: unlimited)."""
    for line in (PROC / str(pid) / "limits").read_text().splitlines():
        if line.startswith("Max address space"):
            value = line.split()[3]
            return None if value == "unlimited" else int(value)
    raise KeyError("Max address space")


def busy(pid: int) -> Callable[[], bool]:
    """A condition that turns true once ``pid`` has burnt a few more CPU ticks (it is running a query)."""
    start = cpu_ticks(pid)
    return lambda: cpu_ticks(pid) >= start + 5
