"""The locked DuckDB: what runs inside a query process (``isolation.py``), the second wall behind the guard.

Each organization gets an in-memory DuckDB whose catalogs ``bronze``, ``silver`` and ``gold`` hold one view per
published table (``bronze.shop.orders`` → ``read_parquet`` over that version's files). The views are created first;
then the instance is locked for good:

- ``allowed_paths`` = exactly the parquet files of the current versions (files, not folders, so nothing can be
  created anywhere: not even a ``COPY … TO`` inside the organization's own lake folder);
- ``enable_external_access = false`` (no other file, no network, no extension install or load, no ATTACH of files);
- ``lock_configuration = true`` (no ``SET`` can undo the above), with thread and memory limits;
- no temp directory (DuckDB would add it to the allowed directories; queries stay within the memory limit).

Starting a DuckDB instance costs ~12 ms, so ``LockedLake`` keeps one locked instance per organization and runs each
query on its own cursor; it is rebuilt when any of the organization's manifests changes (a new version was
published) and dropped after a catalog error (so a guard bypass that detached a catalog can at most break that
organization's own next query). Every query runs under a row cap (the SQL comes wrapped in ``LIMIT cap + 1``) and a
deadline: one watchdog thread interrupts the cursor of any query that outlives it. The interrupt is the polite stop;
a statement inside one long native call only sees it when the call returns, which is why the process this runs in
is killed by its parent when that does not come in time (``isolation.py``).

Each query is one statement executed on the cursor, so DuckDB binds it (and reads the parquet footers) once; the
relation API would bind it twice. A small result (``SMALL_RESULT_CELLS``) is converted from DuckDB's Python rows;
the rest of a larger one comes as Arrow and is turned into JSON values a column at a time (``json_rows``), which is
several times faster than row-by-row Python objects for large results but costs a fixed ~0.3 ms. Types whose Arrow
form would convert differently (intervals, nested types, HUGEINT, nanosecond timestamps …) always take DuckDB's own
row conversion.

What the locks cost was measured (docs/data.md, "Benchmark"): against raw DuckDB with the same threads and memory
limit, the lock settings, the file list instead of a glob, ``union_by_name`` and the missing temp directory each
change the 10M-row benchmark query by less than the run-to-run noise (~0.5 ms); the ``LIMIT`` of the row cap
(which DuckDB turns into a top-N with a dynamic filter on an ``ORDER BY``) by ~0.2 ms quiet, up to ~1 ms under load.

This module imports DuckDB, pyarrow and the lake, never sqlglot or the settings: a query process starts in ~0.6 s.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import math
import re
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from virtuousai.data.errors import QueryFailed, QueryMemoryExceeded, QueryTimedOut, UnknownTable
from virtuousai.data.lake import LAYERS, Manifest, TableRef, TenantLake, sql_string
from virtuousai.errors import ValidationFailed

if TYPE_CHECKING:
    from virtuousai.config import Settings


@dataclass(frozen=True)
class QueryLimits:
    row_cap: int = 10_000
    timeout_s: float = 30.0
    threads: int = 2
    memory_limit: str = "1GB"
    # The most bytes of JSON rows one query may return to the API process (more: query-memory).
    result_max_bytes: int = 32 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryLimits:
        return cls(
            row_cap=settings.query_row_cap,
            timeout_s=settings.query_timeout_s,
            threads=settings.query_threads,
            memory_limit=settings.query_memory_limit,
            result_max_bytes=settings.query_result_max_bytes,
        )

    @classmethod
    def for_transforms(cls, settings: Settings) -> QueryLimits:
        """A transform's own, larger bounds (its row cap is the most rows it may write)."""
        return cls(
            row_cap=settings.transform_row_cap,
            timeout_s=settings.transform_timeout_s,
            threads=settings.query_threads,
            memory_limit=settings.transform_memory_limit,
        )


@dataclass(frozen=True)
class ResultColumn:
    name: str
    type: str


@dataclass(frozen=True)
class Statement:
    """One guarded statement for one organization, as a query process receives it."""

    tenant_id: str
    sql: str  # the guarded SQL, already wrapped in its row cap's LIMIT
    tables: frozenset[TableRef]
    loc: tuple[str | int, ...]  # where errors about it point: ("body", "sql"), ("inputs", "sql"), a tile's sql
    timeout_s: float  # interrupt it after this long (what is left of its deadline)
    limit_s: float  # the time limit to name in a timeout's message


@dataclass(frozen=True)
class Rows:
    columns: tuple[ResultColumn, ...]
    rows: list[list[Any]]  # JSON values, at most row_limit + 1 (the extra row says the result was truncated)
    elapsed_ms: float


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _view_body(lake: TenantLake, manifest: Manifest) -> str:
    files = lake.absolute_files(manifest)
    if not files:  # a table published empty: keep its columns, return no rows
        columns = ", ".join(f"CAST(NULL AS {c.type}) AS {_quote_ident(c.name)}" for c in manifest.columns)
        return f"SELECT {columns or 'NULL AS empty'} WHERE false"
    listing = ", ".join(sql_string(str(f)) for f in files)
    return f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"


def duckdb_config(limits: QueryLimits) -> dict[str, Any]:
    """The configuration every locked instance starts with (before its paths are locked)."""
    return {
        "threads": limits.threads,
        "memory_limit": limits.memory_limit,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "allow_persistent_secrets": False,
        # No spilling: DuckDB adds its temp directory to the allowed directories, which would let COPY write
        # there. Queries stay within memory_limit instead.
        "temp_directory": "",
        # DuckDB starts 8 asynchronous I/O threads per instance by default, each with an 8 MB stack: 64 MB of
        # address space per organization, which counts against a query process's RLIMIT_AS. Reading local parquet
        # runs no faster with them (measured on the benchmark's group-by).
        "async_threads": 1,
    }


def open_locked_connection(
    lake: TenantLake, manifests: Sequence[Manifest], limits: QueryLimits
) -> duckdb.DuckDBPyConnection:
    """A DuckDB that can read exactly these tables' current files and nothing else, configuration locked."""
    con = duckdb.connect(":memory:", config=duckdb_config(limits))
    try:
        for layer in LAYERS:
            con.execute(f"ATTACH ':memory:' AS {layer}")
        schemas: set[tuple[str, str]] = set()
        allowed: list[str] = []
        for manifest in manifests:
            ref = manifest.ref
            if (ref.layer, ref.dataset) not in schemas:
                con.execute(f"CREATE SCHEMA {ref.layer}.{ref.dataset}")
                schemas.add((ref.layer, ref.dataset))
            con.execute(f"CREATE VIEW {ref} AS {_view_body(lake, manifest)}")
            allowed.extend(str(f) for f in lake.absolute_files(manifest))
        con.execute(f"SET allowed_paths = [{', '.join(sql_string(p) for p in allowed)}]")
        con.execute("SET allowed_directories = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def to_json_value(value: Any) -> Any:
    """A DuckDB value as JSON: dates ISO 8601, decimals as numbers, bytes base64, NaN/±inf as null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return str(value)


# DuckDB types (``DuckDBPyType.id``) whose Arrow column converts to the same Python values as DuckDB's own rows.
# Not here, so converted by DuckDB row by row: INTERVAL (Arrow: a month/day/nano tuple), HUGEINT (Arrow: a
# decimal), TIME (Arrow turns 24:00:00 into 00:00:00), nanosecond timestamps, UUID, ENUM, lists, structs and maps.
ARROW_JSON_TYPES: frozenset[str] = frozenset(
    {
        "boolean",
        "tinyint",
        "smallint",
        "integer",
        "bigint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "float",
        "double",
        "decimal",
        "varchar",
        "blob",
        "date",
        "timestamp",
        "timestamp with time zone",
    }
)


# Days since 1970-01-01 of Python's date.min and date.max: Arrow's text for dates in this range is isoformat's.
_PYTHON_DATE_DAYS = (-719_162, 2_932_896)
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "+00:00"})


def _json_column(column: pa.ChunkedArray) -> list[Any]:
    """One result column as JSON values, equal to ``to_json_value`` of each cell, vectorised where Arrow can."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_string(kind):
        return list(column.to_pylist())  # already JSON values
    if pa.types.is_floating(kind):  # NaN and ±inf have no JSON form: null
        return list(pc.if_else(pc.is_finite(column), column, pa.scalar(None, kind)).to_pylist())
    if pa.types.is_decimal(kind):  # float() of the exact decimal text rounds exactly as float(Decimal) does
        return [None if text is None else float(text) for text in pc.cast(column, pa.string()).to_pylist()]
    if pa.types.is_date32(kind):
        days = pc.min_max(column.cast(pa.int32()))
        low, high = days["min"].as_py(), days["max"].as_py()
        if low is None or (_PYTHON_DATE_DAYS[0] <= low and high <= _PYTHON_DATE_DAYS[1]):
            return list(pc.cast(column, pa.string()).to_pylist())  # YYYY-MM-DD, as date.isoformat()
    if pa.types.is_timestamp(kind) and kind.tz in _UTC_ZONES:
        # Naive datetimes are built several times faster than zone-aware ones; the offset is always +00:00.
        naive = column.cast(pa.timestamp(kind.unit)).to_pylist()
        return [None if value is None else value.isoformat() + "+00:00" for value in naive]
    return [to_json_value(value) for value in column.to_pylist()]


def json_rows(table: pa.Table) -> list[list[Any]]:
    """An Arrow result as JSON rows, converted column by column (same values as ``to_json_value`` per cell).

    Raises ``OverflowError``/``ValueError`` for values Python's datetime cannot hold (DuckDB's ``infinity`` dates,
    years past 9999), which DuckDB's own row conversion clamps or spells out: the caller falls back to that.
    """
    columns = [_json_column(column) for column in table.itercolumns()]
    return [list(row) for row in zip(*columns, strict=True)]


# Up to this many cells a result converts faster from DuckDB's Python rows, cell by cell, than through Arrow, whose
# detour costs ~0.3 ms however small the result; above it Arrow's column-at-a-time conversion wins (measured: the
# two cross at ~60-100 rows of six columns).
SMALL_RESULT_CELLS = 256


def _json_result(
    cursor: duckdb.DuckDBPyConnection, sql: str, types: Sequence[duckdb.sqltypes.DuckDBPyType]
) -> list[list[Any]]:
    """The rows of ``sql``, just executed on ``cursor``, as JSON values (``to_json_value`` of each cell).

    A small result comes as Python rows; past ``SMALL_RESULT_CELLS`` the rest comes through Arrow when every column
    has a type whose Arrow form converts the same (``ARROW_JSON_TYPES``).
    """
    head_size = max(1, SMALL_RESULT_CELLS // max(1, len(types)))
    rows = [[to_json_value(v) for v in row] for row in cursor.fetchmany(head_size)]
    if len(rows) < head_size:
        return rows  # that was all of it
    if all(kind.id in ARROW_JSON_TYPES for kind in types):
        try:
            rest = _arrow_rest(cursor)
            return rows if rest is None else rows + json_rows(rest)
        except (OverflowError, ValueError):
            # An infinite or out-of-range date, which DuckDB's row conversion (below) handles. Arrow used the result
            # up, so the query runs again.
            rows = []
            cursor.execute(sql)
    return rows + [[to_json_value(v) for v in row] for row in cursor.fetchall()]


# DuckDB warns on Arrow output from a DB-API result ("makes an extra copy of the rows, use con.sql(query)…"). For
# ``run`` the relation is the slower path (it binds the query twice, see there); the copy is of at most row_cap + 1
# rows. Ignored for the calls made from this module only.
_ARROW_COPY_MESSAGE = "Arrow output on a DB-API result"
_ARROW_COPY_MODULE = re.escape(__name__) + r"\Z"
# The entry ``warnings.filterwarnings`` makes for these arguments (its message pattern is case-insensitive).
_ARROW_COPY_FILTER = ("ignore", re.compile(_ARROW_COPY_MESSAGE, re.I), UserWarning, re.compile(_ARROW_COPY_MODULE), 0)


def _arrow_rest(cursor: duckdb.DuckDBPyConnection) -> pa.Table | None:
    """The rows the cursor's result still holds, as Arrow (None: a fetch used them all up).

    The warning filter is added where it is missing rather than once at import, because pytest restores the
    process's filters around every test. ``warnings.catch_warnings`` is no alternative: it swaps the filters of the
    whole process, which is not safe while other threads run queries.
    """
    if _ARROW_COPY_FILTER not in warnings.filters:
        warnings.filterwarnings("ignore", _ARROW_COPY_MESSAGE, UserWarning, _ARROW_COPY_MODULE)
    return cursor.to_arrow_table()


class _Deadline:
    """One query's deadline; ``disarm`` once the query is over, after which ``interrupt`` is never called."""

    __slots__ = ("at", "interrupt")

    def __init__(self, at: float, interrupt: Callable[[], None]) -> None:
        self.at = at
        self.interrupt: Callable[[], None] | None = interrupt


class QueryDeadlines:
    """One watchdog thread that interrupts every query that outlives its deadline.

    A ``threading.Timer`` per query starts a new thread and waits until it runs: ~0.05 ms on an idle machine, but
    milliseconds on a busy one, on every query. Here arming is a heap push under a lock. The thread starts with the
    first deadline and ends after ``idle_exit_s`` with none pending (or at ``close``). Disarmed deadlines are
    dropped when they come due (lazily), so disarming costs nothing either.
    """

    def __init__(self, *, idle_exit_s: float = 60.0) -> None:
        self._idle_exit_s = idle_exit_s
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()  # ties on `at` never compare the deadlines themselves
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float, interrupt: Callable[[], None]) -> _Deadline:
        deadline = _Deadline(time.monotonic() + timeout_s, interrupt)
        with self._condition:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="lake-query-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._condition.notify()  # earlier than what the watchdog sleeps towards
        return deadline

    @property
    def watching(self) -> bool:
        """Whether the watchdog thread runs (it starts with the first deadline and ends when idle)."""
        with self._condition:
            return self._thread is not None

    def disarm(self, deadline: _Deadline) -> None:
        with self._condition:  # so an interrupt in flight finishes first, and none starts after this
            deadline.interrupt = None

    def close(self) -> None:
        with self._condition:
            self._thread = None  # the running watchdog sees it is no longer current and ends
            self._heap.clear()
            self._condition.notify_all()

    def _watch(self) -> None:
        me = threading.current_thread()
        with self._condition:
            while self._thread is me:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, due = heapq.heappop(self._heap)
                    if due.interrupt is not None:
                        due.interrupt()  # only sets DuckDB's interrupt flag: quick, fine under the lock
                        due.interrupt = None
                if self._heap:
                    self._condition.wait(self._heap[0][0] - now)
                elif not self._condition.wait(self._idle_exit_s) and not self._heap and self._thread is me:
                    self._thread = None  # idle: the next arm starts a new watchdog


@dataclass
class _Instance:
    fingerprint: tuple[tuple[str, int, int], ...]
    connection: duckdb.DuckDBPyConnection
    tables: frozenset[TableRef]


class LockedLake:
    """Runs guarded statements over organizations' lakes on one locked DuckDB per organization (LRU of
    ``max_instances``). Thread-safe; calls block. A query process holds one; tests use one directly."""

    def __init__(self, lake_dir: Path, limits: QueryLimits, *, max_instances: int = 16) -> None:
        self.lake_dir = lake_dir
        self.limits = limits
        self._max_instances = max_instances
        self._instances: OrderedDict[str, _Instance] = OrderedDict()
        self._lock = threading.Lock()
        self._deadlines = QueryDeadlines()

    def lake(self, tenant_id: str) -> TenantLake:
        return TenantLake(self.lake_dir, tenant_id)

    def rows(self, statement: Statement) -> Rows:
        """The statement's rows as JSON values."""
        started = time.perf_counter()
        with self._cursor(statement) as cursor:
            # One statement on the cursor, not a relation: ``cursor.sql(…)`` binds the query for its columns and
            # binds it again to run it, and binding a view reads its parquet footers. The cursor's ``description``
            # carries the same DuckDB types after a single bind.
            description = cursor.execute(statement.sql).description
            columns = tuple(ResultColumn(str(name), str(kind)) for name, kind, *_ in description)
            rows = _json_result(cursor, statement.sql, [kind for _, kind, *_ in description])
        return Rows(columns, rows, elapsed_ms=round((time.perf_counter() - started) * 1000, 3))

    def write_parquet(self, statement: Statement, path: Path, *, max_rows: int) -> int:
        """Stream the statement's result into one parquet file (a transform's staged output); its row count.

        More than ``max_rows`` rows fail the statement (the SQL comes wrapped in ``LIMIT max_rows + 1``)."""
        rows = 0
        with self._cursor(statement) as cursor:
            reader = cursor.sql(statement.sql).to_arrow_reader(100_000)
            with pq.ParquetWriter(path, reader.schema) as writer:
                for batch in reader:
                    rows += batch.num_rows
                    if rows > max_rows:
                        raise ValidationFailed.at(
                            list(statement.loc), f"the result has more than {max_rows} rows (the transform row cap)"
                        )
                    writer.write_batch(batch)
        return rows

    def close(self) -> None:
        with self._lock:
            for instance in self._instances.values():
                instance.connection.close()
            self._instances.clear()
        self._deadlines.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _instance(self, tenant_id: str) -> _Instance:
        lake = self.lake(tenant_id)
        fingerprint = lake.fingerprint()
        with self._lock:
            current = self._instances.get(tenant_id)
            if current is not None and current.fingerprint == fingerprint:
                self._instances.move_to_end(tenant_id)
                return current
        manifests = lake.manifests()
        connection = open_locked_connection(lake, manifests, self.limits)
        instance = _Instance(fingerprint, connection, frozenset(m.ref for m in manifests))
        with self._lock:
            self._instances[tenant_id] = instance
            self._instances.move_to_end(tenant_id)
            while len(self._instances) > self._max_instances:
                # Not closed here: a query may still be running on it; it closes when the last cursor goes.
                self._instances.popitem(last=False)
        return instance

    def _evict(self, tenant_id: str, instance: _Instance) -> None:
        with self._lock:
            if self._instances.get(tenant_id) is instance:
                del self._instances[tenant_id]

    @contextmanager
    def _cursor(self, statement: Statement) -> Iterator[duckdb.DuckDBPyConnection]:
        loc = list(statement.loc)
        instance = self._instance(statement.tenant_id)
        for ref in sorted(statement.tables):
            if ref not in instance.tables:
                raise UnknownTable.at(loc, f"unknown table {str(ref)!r}", type="unknown_table")
        with self._lock:
            cursor = instance.connection.cursor()
        deadline = self._deadlines.arm(statement.timeout_s, cursor.interrupt)
        try:
            yield cursor
        except duckdb.InterruptException:
            raise QueryTimedOut.at(loc, f"the query ran longer than {statement.limit_s:g} s and was stopped") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryMemoryExceeded.at(
                loc, f"the query needed more than its {self.limits.memory_limit} of memory: {_first_line(exc)}"
            ) from None
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.CatalogException):
                self._evict(statement.tenant_id, instance)
            message = str(exc).replace(str(self.lake(statement.tenant_id).root), "<lake>")
            raise QueryFailed.at(loc, _first_line(message)) from None
        finally:
            self._deadlines.disarm(deadline)
            cursor.close()


def _first_line(error: object) -> str:
    return str(error).splitlines()[0][:2000]
