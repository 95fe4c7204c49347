"""Lake queries in processes whose memory and time the operating system bounds, whatever the SQL does.

DuckDB's ``memory_limit`` covers its buffer manager, not every allocation (a scalar function's result string is
outside it), and an interrupt only lands between DuckDB's steps, not inside one long native call such as
``repeat('x', 2000000000)``. Neither can be fixed from inside the process that runs the query. So queries run in
a small pool of query processes, and the bounds are the kernel's:

- **memory**: each query process sets ``RLIMIT_AS`` on itself once it has started: its address space at that
  moment, plus room for each organization's DuckDB instance, plus 1.5 times its DuckDB memory limit, plus 256 MB.
  An allocation past it fails: DuckDB answers "Out of Memory", Python raises ``MemoryError``; either way the query
  answers ``query-memory`` and the process carries on (after a ``MemoryError`` it is replaced). If the process
  dies instead (the kernel's OOM killer, an abort), the query answers ``query-memory`` too and it is replaced.
- **time**: the process interrupts its own query at the deadline (the polite stop, which keeps the process and
  its DuckDB instances); the parent kills the process at the deadline plus a grace of a fifth of the limit (at
  most 2 s) if no answer has come by then, answers ``query-timeout`` and starts a replacement.
- **results**: a query process sends at most ``result_max_bytes`` of JSON rows (more: ``query-memory``), so the
  API process never holds more than that per query.

Each process runs one query at a time; a query waits (asynchronously, or in the calling thread) for a free one
within its own deadline, and one organization holds at most all but one of them, so another organization's query
always finds one. The processes start when first needed (``python -m virtuousai.data.isolation``: DuckDB, pyarrow
and the lake, no sqlglot and no settings, ~0.6 s) and keep one locked DuckDB per organization (``locked.py``), so a
query pays a message each way, not a process or an instance. Requests are JSON; answers are a JSON header line
and the rows as JSON bytes, which the API sends on as they are. Nothing is unpickled from a query process.
A query process exits when its parent does (it watches a pipe only the parent holds), also after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import virtuousai
from virtuousai.data.errors import QUERY_ERRORS, QueriesBusy, QueryFailed, QueryMemoryExceeded, QueryTimedOut
from virtuousai.data.locked import QueryLimits
from virtuousai.errors import FieldError, VaiError, ValidationFailed
from virtuousai.sizes import parse_size

log = logging.getLogger(__name__)

# A query process may grow its address space by this many times its DuckDB memory limit, plus the slack (thread
# stacks, allocator arenas, the result's JSON), beyond what it holds once started. Measured: DuckDB's own limit
# then answers first for what it manages (hash tables, sorts); the address-space limit catches the rest.
ADDRESS_SPACE_FACTOR = 1.5
ADDRESS_SPACE_SLACK = 256 * 1024 * 1024
KILL_GRACE_FRACTION = 0.2  # of the time limit, at most KILL_GRACE_MAX_S: how late the parent kills
KILL_GRACE_MAX_S = 2.0
START_TIMEOUT_S = 60.0  # a process that has not said "ready" by then is killed
CANCEL_POLL_S = 0.05  # how often a cancellable call (a transform) looks at its cancellation
_ENVELOPE_BYTES = 1024 * 1024  # room for the header next to the rows


def kill_grace_s(limit_s: float) -> float:
    return min(KILL_GRACE_MAX_S, KILL_GRACE_FRACTION * limit_s)


def address_space_allowance(limits: QueryLimits) -> int:
    """The bytes of address space a query process may add to what it holds once started."""
    return int(parse_size(limits.memory_limit) * ADDRESS_SPACE_FACTOR) + ADDRESS_SPACE_SLACK


class CallCancelled(Exception):
    """The caller's ``cancelled()`` turned true while its query ran; the process was killed."""


# --- the parent's side ----------------------------------------------------------------------------------------


class QueryProcess:
    """One query process, used by one caller at a time (``QueryProcessPool`` hands it out)."""

    def __init__(self, config: dict[str, Any], death_pipe: _DeathPipe, max_instances: int) -> None:
        self._config = config
        self._death_pipe = death_pipe
        self._max_instances = max_instances
        self._popen: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._started_at = 0.0
        self.tenants: OrderedDict[str, None] = OrderedDict()  # whose DuckDB instances it holds, most recent last

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None and self._popen.poll() is None else None

    def start(self) -> None:
        """Start the process if it is not running; returns at once (it says "ready" once it has started)."""
        if self._popen is not None and self._popen.poll() is None:
            return
        self._forget()
        import socket

        parent_end, child_end = socket.socketpair()
        death_fd = self._death_pipe.read_end()
        env = dict(os.environ)
        package_root = str(Path(virtuousai.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # glibc reserves 64 MB of address space per malloc arena (up to 8 per core); two are plenty for one query
        # at a time, and the reservations would otherwise count against RLIMIT_AS.
        env["MALLOC_ARENA_MAX"] = "2"
        try:
            self._popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                [
                    sys.executable,
                    "-m",
                    "virtuousai.data.isolation",
                    json.dumps(self._config),
                    str(child_end.fileno()),
                    str(death_fd),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(child_end.fileno(), death_fd),
                env=env,
                close_fds=True,
            )
        finally:
            child_end.close()
        self._conn = Connection(parent_end.detach())
        self._ready = False
        self._started_at = time.monotonic()

    def exchange(
        self,
        request: dict[str, Any],
        *,
        deadline: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and return the answer's header and body; raise what the process reported.

        ``deadline`` (monotonic) is when the query must be over: the process interrupts it then, and this kills
        the process ``kill_grace_s`` of the request's ``limit_s`` later if no answer has come.
        """
        limit_s = float(request["limit_s"])
        self.start()
        if not self._ready:
            # A process still starting (the first query after boot, the one right after a kill) is waited for
            # within the query's deadline, so every query is answered within its limit plus the grace.
            started_by = self._started_at + START_TIMEOUT_S
            if not self._wait(min(deadline, started_by), cancelled):
                if time.monotonic() < started_by:
                    raise QueryTimedOut.at(
                        list(request["loc"]),
                        f"the query could not run within its {limit_s:g} s: its query process was still starting",
                    )
                self._kill(f"did not start within {START_TIMEOUT_S:g} s")
                raise QueryFailed.at(list(request["loc"]), "no query process could be started; see the server log")
            self._receive(request)  # the "ready" line
            self._ready = True
        conn = self._connection()
        request = {**request, "timeout_s": max(0.001, deadline - time.monotonic())}
        try:
            conn.send_bytes(json.dumps(request).encode())
        except OSError:
            raise self._died(request) from None
        if not self._wait(deadline + kill_grace_s(limit_s), cancelled):
            self._kill(f"ran past its {limit_s:g} s limit")
            raise QueryTimedOut.at(
                list(request["loc"]), f"the query ran longer than {limit_s:g} s and its process was stopped"
            )
        header, body = self._receive(request)
        if request["op"] != "ping":
            self.tenants[request["tenant"]] = None
            self.tenants.move_to_end(request["tenant"])
            while len(self.tenants) > self._max_instances:
                self.tenants.popitem(last=False)
        if header.get("recycle"):
            self._kill("asked to be replaced after running out of memory")
        if not header["ok"]:
            raise _reported_error(header)
        return header, body

    @property
    def started(self) -> bool:
        return self._popen is not None

    def is_ready(self) -> bool:
        """Whether it has started and said so (reading its "ready" line if it waits to be read); never blocks."""
        if self._ready:
            return True
        if self._conn is None or not self._conn.poll(0):
            return False
        try:
            self._conn.recv_bytes(_ENVELOPE_BYTES)
        except (EOFError, OSError):  # it ended while starting: the next use starts it again
            self.stop()
            return False
        self._ready = True
        return True

    def stop(self) -> None:
        """Kill the process (if any) and wait for it."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
        self._forget()

    # -- internals ------------------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        assert self._conn is not None
        return self._conn

    def _wait(self, until: float, cancelled: Callable[[], bool] | None) -> bool:
        """Whether an answer (or the end of the process) arrived before ``until``; ``CallCancelled`` if cancelled."""
        conn = self._connection()
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return conn.poll(0)
            if conn.poll(min(remaining, CANCEL_POLL_S) if cancelled is not None else remaining):
                return True
            if cancelled is not None and cancelled():
                self._kill("cancelled")
                raise CallCancelled()

    def _receive(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        max_bytes = int(self._config["result_max_bytes"])
        try:
            message = self._connection().recv_bytes(max_bytes + _ENVELOPE_BYTES)
        except EOFError:
            raise self._died(request) from None
        except OSError:  # a longer message than an answer may be (the process checks first): not to be trusted
            self._kill("sent a longer answer than allowed")
            raise QueryMemoryExceeded.at(
                list(request["loc"]), f"the query's answer was longer than the {max_bytes / 2**20:.1f} MiB allowed"
            ) from None
        line, _, body = message.partition(b"\n")
        header: dict[str, Any] = json.loads(line)
        return header, body

    def _died(self, request: dict[str, Any]) -> VaiError:
        """What to answer for a process that ended while serving ``request``; a replacement starts at once."""
        assert self._popen is not None
        popen = self._popen
        try:
            code: int | None = popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its end of the socket is closed but it lingers: not to be trusted
            popen.kill()
            code = None
        self._forget()
        self.start()  # the pool heals: the replacement starts now, in the background
        loc = list(request["loc"])
        tenant = request.get("tenant")
        if code is None or code < 0:
            name = _signal_name(-code) if code is not None else "unresponsive"
            log.warning("query process %s died (%s) serving a query of %s", popen.pid, name, tenant)
            return QueryMemoryExceeded.at(
                loc, f"the query's process died ({name}), most likely for using more memory than it may have"
            )
        log.warning("query process %s exited with status %s serving a query of %s", popen.pid, code, tenant)
        return QueryFailed.at(loc, f"the query's process stopped unexpectedly (exit status {code})")

    def _kill(self, why: str) -> None:
        if self._popen is not None:
            log.warning("killing query process %s: %s", self._popen.pid, why)
        self.stop()
        self.start()

    def _forget(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # not reaped yet: Popen reaps it later
                self._popen.wait(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._popen, self._conn, self._ready = None, None, False
        self.tenants.clear()


class _DeathPipe:
    """A pipe only the API process writes to (it never does): its query processes read it and exit at its end,
    which comes when the API process does, however it ends."""

    def __init__(self) -> None:
        self._fds: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def read_end(self) -> int:
        with self._lock:
            if self._fds is None:
                self._fds = os.pipe()
            return self._fds[0]

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, None
        for fd in fds or ():
            os.close(fd)


def _stop_all(processes: list[QueryProcess], death_pipe: _DeathPipe) -> None:
    for process in processes:
        process.stop()
    death_pipe.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _reported_error(header: dict[str, Any]) -> ValidationFailed:
    cls = QUERY_ERRORS.get(str(header.get("type")), QueryFailed)
    errors = [FieldError(e["loc"], e["msg"], e.get("type", "value_error")) for e in header.get("errors", [])]
    return cls(str(header.get("detail", "")), errors=errors)


class _Waiter:
    __slots__ = ("process", "tenant", "wake")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.process: QueryProcess | None = None
        self.wake: Callable[[], None] = lambda: None


class QueryProcessPool:
    """``processes`` query processes for one set of limits; callers take one, exchange, and give it back.

    One organization holds at most ``processes - 1`` of them (all of them when there is one). Waiting callers are
    served first come, first served among those allowed; a caller that has no process by its deadline gets
    ``QueriesBusy``. Thread-safe, and usable from coroutines (``call_async``) and threads (``call``) at once.
    """

    def __init__(self, lake_dir: Path, limits: QueryLimits, *, processes: int, max_instances: int = 16) -> None:
        self.limits = limits
        config = {
            "lake_dir": str(lake_dir),
            "row_cap": limits.row_cap,
            "timeout_s": limits.timeout_s,
            "threads": limits.threads,
            "memory_limit": limits.memory_limit,
            "result_max_bytes": limits.result_max_bytes,
            "address_space_allowance": address_space_allowance(limits),
            "max_instances": max_instances,
        }
        self._death_pipe = _DeathPipe()
        self._processes = [QueryProcess(config, self._death_pipe, max_instances) for _ in range(processes)]
        self._per_tenant = max(1, processes - 1)
        self._lock = threading.Lock()
        self._free: list[QueryProcess] = list(self._processes)
        self._held: Counter[str] = Counter()
        self._waiters: deque[_Waiter] = deque()
        # An engine dropped without close() still stops its processes (when collected, or at interpreter exit).
        self._finalizer = weakref.finalize(self, _stop_all, self._processes, self._death_pipe)

    def call(
        self,
        tenant_id: str,
        request: dict[str, Any],
        *,
        deadline: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """Run ``request`` on a free process (waiting in this thread until ``deadline`` for one)."""
        process = self._take(tenant_id, deadline, request)
        try:
            return process.exchange(request, deadline=deadline, cancelled=cancelled)
        finally:
            self._give_back(process, tenant_id)

    async def call_async(
        self, tenant_id: str, request: dict[str, Any], *, deadline: float
    ) -> tuple[dict[str, Any], bytes]:
        """``call`` for coroutines: waits for a process without a thread, then exchanges in one."""
        process = await self._take_async(tenant_id, deadline, request)
        exchange = asyncio.ensure_future(asyncio.to_thread(process.exchange, request, deadline=deadline))
        try:
            return await asyncio.shield(exchange)
        finally:
            if exchange.done():
                self._give_back(process, tenant_id)
            else:  # the caller was cancelled: the process is given back once its exchange is over
                exchange.add_done_callback(lambda done: self._give_back_after(done, process, tenant_id))

    def warm(self) -> list[int]:
        """Start every process now and wait until each is ready (rather than within queries' time); their ids."""
        deadline = time.monotonic() + START_TIMEOUT_S
        request = {"op": "ping", "tenant": "", "loc": [], "limit_s": START_TIMEOUT_S}
        taken: list[tuple[str, QueryProcess]] = []
        try:
            for index in range(len(self._processes)):  # each under its own name, so all can be held at once
                name = f"warm:{index}"
                taken.append((name, self._take(name, deadline, request)))
            return [int(process.exchange(request, deadline=deadline)[0]["pid"]) for _, process in taken]
        finally:
            for name, process in taken:
                self._give_back(process, name)

    def pids(self) -> list[int]:
        """The running query processes' ids (for tests and operators)."""
        return [pid for pid in (p.pid for p in self._processes) if pid is not None]

    def close(self) -> None:
        """Kill every query process. The pool stays usable: the next call starts processes again."""
        _stop_all(self._processes, self._death_pipe)

    # -- internals ------------------------------------------------------------------------------------------

    def _grab(self, tenant_id: str) -> QueryProcess | None:
        """A free process for this organization, if it may have one (call with the lock held)."""
        if not self._free or self._held[tenant_id] >= self._per_tenant:
            return None

        # A ready process that holds this organization's DuckDB instance, else a ready one nobody has used, else
        # one that is starting, and only then one warm for other organizations (so a burst of one organization,
        # whose processes were just replaced, does not take the process the others are served by); among equals
        # the most recently used.
        def rank(index: int) -> tuple[bool, bool, bool, bool, int]:
            process = self._free[index]
            ready = process.is_ready()
            mine = tenant_id in process.tenants
            return (ready and mine, ready and not process.tenants, process.started and not ready, ready, index)

        index = max(range(len(self._free)), key=rank)
        self._held[tenant_id] += 1
        process = self._free.pop(index)
        # One spare process is kept starting or started while there is room, so a burst (or the query after a
        # kill) rarely waits for a start-up; processes beyond that start only when needed.
        if self._free and not any(p.started for p in self._free):
            self._free[0].start()
        return process

    def _take(self, tenant_id: str, deadline: float, request: dict[str, Any]) -> QueryProcess:
        event = threading.Event()
        with self._lock:
            process = self._grab(tenant_id)
            if process is not None:
                return process
            waiter = _Waiter(tenant_id)
            waiter.wake = event.set
            self._waiters.append(waiter)
        event.wait(max(0.0, deadline - time.monotonic()))
        return self._settle(waiter, request)

    async def _take_async(self, tenant_id: str, deadline: float, request: dict[str, Any]) -> QueryProcess:
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()

        def grant() -> None:
            if not granted.done():
                granted.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(grant)

        with self._lock:
            process = self._grab(tenant_id)
            if process is not None:
                return process
            waiter = _Waiter(tenant_id)
            waiter.wake = wake
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(granted), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
        except asyncio.CancelledError:  # the caller went away while waiting: leave the queue, or pass it on
            with self._lock:
                handed = waiter.process
                if handed is None:
                    self._waiters.remove(waiter)
            if handed is not None:
                self._give_back(handed, tenant_id)
            raise
        return self._settle(waiter, request)

    def _settle(self, waiter: _Waiter, request: dict[str, Any]) -> QueryProcess:
        """The process handed to ``waiter``, or (none came) ``QueriesBusy`` and the waiter leaves the queue."""
        with self._lock:
            if waiter.process is not None:
                return waiter.process
            self._waiters.remove(waiter)
            busy = self._held[waiter.tenant] >= self._per_tenant
        processes = len(self._processes)
        detail = (
            f"this organization's queries hold {self._per_tenant} of the {processes} query processes"
            if busy
            else f"all {processes} query processes were busy"
        )
        raise QueriesBusy.at(list(request["loc"]), f"the query could not start within its time limit: {detail}")

    def _give_back(self, process: QueryProcess, tenant_id: str) -> None:
        with self._lock:
            self._held[tenant_id] -= 1
            if self._held[tenant_id] <= 0:
                del self._held[tenant_id]
            for waiter in self._waiters:
                if self._held[waiter.tenant] < self._per_tenant:
                    self._waiters.remove(waiter)
                    self._held[waiter.tenant] += 1
                    waiter.process = process
                    waiter.wake()
                    return
            self._free.append(process)

    def _give_back_after(self, done: asyncio.Future[Any], process: QueryProcess, tenant_id: str) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the caller that would have seen it is gone
        self._give_back(process, tenant_id)


# --- the query process's side ---------------------------------------------------------------------------------


def _address_space() -> int | None:
    """This process's address space in bytes (None where there is no /proc: not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _exit_when_parent_dies(death_fd: int) -> None:
    os.read(death_fd, 1)  # only end-of-file ever comes: every writer (the parent) is gone
    os._exit(0)


def _serve(config: dict[str, Any], conn: Connection) -> None:
    import duckdb
    from pydantic_core import to_json

    from virtuousai.data.lake import TableRef
    from virtuousai.data.locked import LockedLake, Statement, duckdb_config

    limits = QueryLimits(
        row_cap=int(config["row_cap"]),
        timeout_s=float(config["timeout_s"]),
        threads=int(config["threads"]),
        memory_limit=str(config["memory_limit"]),
        result_max_bytes=int(config["result_max_bytes"]),
    )
    # The address-space ceiling: what this process holds once DuckDB is set up, room for each organization's
    # instance (measured here: the second of two probe instances; the first also sets up DuckDB's allocator), and
    # the allowance for one query. Set once, as soft and hard limit: nothing here can raise it again.
    # Where the size cannot be read (not Linux: macOS does not enforce RLIMIT_AS either), only the time bound
    # and DuckDB's own limit hold; the process says so on stderr.
    first = duckdb.connect(config=duckdb_config(limits))
    first.execute("SELECT 1").fetchall()
    settled = _address_space()
    second = duckdb.connect(config=duckdb_config(limits))
    second.execute("SELECT 1").fetchall()
    grown = _address_space()
    second.close()
    first.close()
    max_instances = int(config["max_instances"])
    ceiling: int | None = None
    if settled is not None and grown is not None:
        per_instance = max(grown - settled, 16 * 1024 * 1024)
        ceiling = settled + max_instances * per_instance + int(config["address_space_allowance"])
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    else:
        print("vai query process: no /proc/self/status, so no address-space limit", file=sys.stderr)
    lake = LockedLake(Path(config["lake_dir"]), limits, max_instances=max_instances)
    conn.send_bytes(json.dumps({"ok": True, "ready": True, "pid": os.getpid(), "address_space": ceiling}).encode())

    def answer(request: dict[str, Any]) -> bytes:
        if request["op"] == "ping":
            return json.dumps({"ok": True, "pid": os.getpid()}).encode() + b"\n"
        statement = Statement(
            tenant_id=str(request["tenant"]),
            sql=str(request["sql"]),
            tables=frozenset(TableRef(*ref) for ref in request["tables"]),
            loc=tuple(request["loc"]),
            timeout_s=float(request["timeout_s"]),
            limit_s=float(request["limit_s"]),
        )
        if request["op"] == "parquet":
            rows = lake.write_parquet(statement, Path(request["path"]), max_rows=int(request["max_rows"]))
            return json.dumps({"ok": True, "rows": rows}).encode() + b"\n"
        result = lake.rows(statement)
        row_limit = int(request["row_limit"])
        body = to_json(result.rows[:row_limit])
        if len(body) > limits.result_max_bytes:
            raise QueryMemoryExceeded.at(
                list(statement.loc),
                f"the result is {len(body) / 2**20:.1f} MiB of JSON, more than the "
                f"{limits.result_max_bytes / 2**20:.1f} MiB a query may return: select fewer rows or columns",
            )
        header = {
            "ok": True,
            "columns": [[c.name, c.type] for c in result.columns],
            "truncated": len(result.rows) > row_limit,
            "elapsed_ms": result.elapsed_ms,
        }
        return json.dumps(header).encode() + b"\n" + body

    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        recycle = False
        try:
            reply = answer(request)
        except VaiError as exc:
            reply = _error_line(exc.type_slug, exc.detail, list(exc.errors))
        except MemoryError:
            recycle = True  # Python's heap may be left fragmented: a fresh process takes over
            loc = list(request.get("loc", ["sql"]))
            detail = f"the query needed more memory than its process may have (DuckDB's limit {limits.memory_limit})"
            reply = _error_line(QueryMemoryExceeded.type_slug, detail, [FieldError(loc, detail)], recycle=True)
        conn.send_bytes(reply)
        if recycle:
            return


def _error_line(slug: str, detail: str, errors: list[Any], *, recycle: bool = False) -> bytes:
    header = {"ok": False, "type": slug, "detail": detail, "errors": errors, "recycle": recycle}
    return json.dumps(header).encode() + b"\n"


def _main(argv: list[str]) -> None:
    config, fd, death_fd = json.loads(argv[0]), int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the parent, which stops us
    threading.Thread(target=_exit_when_parent_dies, args=(death_fd,), daemon=True).start()
    _serve(config, Connection(fd))


if __name__ == "__main__":
    _main(sys.argv[1:])
