"""``LakeQueryEngine``: the one way guarded SQL runs over the lake, for every caller (``POST /query``, table
previews, ``sql_transform``, and the flashboard tiles and agent tools to come).

A query is guarded here (``guard.py``, the first wall), then runs in a query process (``isolation.py``) on the
organization's locked DuckDB (``locked.py``, the second wall). The process is the third wall, for memory and time:
the operating system bounds its address space, and it is killed and replaced when a query outlives its deadline
by more than a short grace, so an overrun answers ``query-memory`` or ``query-timeout`` and costs the API process
nothing. Rows come back as JSON bytes, which the API sends as they are (``QueryResult.rows_json``).

``run`` blocks its thread; ``run_async`` waits for a query process without one. Both have the same deadline: the
time limit counts from the call, waiting for a free process included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic_core import from_json

from virtuousai.data.errors import QueryFailed, QueryMemoryExceeded, QueryTimedOut
from virtuousai.data.guard import GuardedQuery, guard_sql
from virtuousai.data.isolation import QueryProcessPool
from virtuousai.data.lake import TenantLake
from virtuousai.data.locked import (
    ARROW_JSON_TYPES,
    SMALL_RESULT_CELLS,
    QueryDeadlines,
    QueryLimits,
    ResultColumn,
    json_rows,
    open_locked_connection,
    to_json_value,
)

if TYPE_CHECKING:
    from virtuousai.config import Settings
    from virtuousai.runtime.context import ActionContext

__all__ = [
    "ARROW_JSON_TYPES",
    "SMALL_RESULT_CELLS",
    "LakeQueryEngine",
    "QueryDeadlines",
    "QueryFailed",
    "QueryLimits",
    "QueryMemoryExceeded",
    "QueryResult",
    "QueryTimedOut",
    "ResultColumn",
    "json_rows",
    "to_json_value",
]

DEFAULT_PROCESSES = 3


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[ResultColumn, ...]
    rows_json: bytes  # the rows as a JSON array of arrays, as the query process sent them
    truncated: bool
    elapsed_ms: float

    @cached_property
    def rows(self) -> list[list[Any]]:
        """The rows as Python values (decoded on first use; the API sends ``rows_json`` without decoding it)."""
        rows: list[list[Any]] = from_json(self.rows_json)
        return rows


class LakeQueryEngine:
    """Runs guarded SQL over one organization's lake at a time, each query in a bounded query process.

    ``processes`` query processes at most (started when first needed); ``max_instances`` organizations' locked
    DuckDB instances kept in each. Thread-safe.
    """

    def __init__(
        self, lake_dir: Path, limits: QueryLimits, *, max_instances: int = 16, processes: int = DEFAULT_PROCESSES
    ) -> None:
        self.lake_dir = lake_dir
        self.limits = limits
        self._pool = QueryProcessPool(lake_dir, limits, processes=processes, max_instances=max_instances)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeQueryEngine:
        return cls(settings.lake_dir, QueryLimits.from_settings(settings), processes=settings.query_processes)

    def lake(self, tenant_id: str) -> TenantLake:
        return TenantLake(self.lake_dir, tenant_id)

    def query(self, tenant_id: str, sql: str, *, limit: int | None = None) -> QueryResult:
        """Guard, then run ``sql``; at most ``min(limit, row_cap)`` rows, ``truncated`` if there were more."""
        return self.run(tenant_id, guard_sql(sql), limit=limit)

    def run(self, tenant_id: str, guarded: GuardedQuery, *, limit: int | None = None) -> QueryResult:
        """Run an already guarded query in this thread (blocking until it is over or stopped)."""
        request, deadline = self._rows_request(tenant_id, guarded, limit)
        header, body = self._pool.call(tenant_id, request, deadline=deadline)
        return _result(header, body)

    async def run_async(self, tenant_id: str, guarded: GuardedQuery, *, limit: int | None = None) -> QueryResult:
        """``run`` for coroutines: the wait for a free query process holds no thread."""
        request, deadline = self._rows_request(tenant_id, guarded, limit)
        header, body = await self._pool.call_async(tenant_id, request, deadline=deadline)
        return _result(header, body)

    async def columns_async(self, tenant_id: str, guarded: GuardedQuery) -> tuple[ResultColumn, ...]:
        """The columns ``guarded`` returns, found by running it with LIMIT 0 (DuckDB plans it and reads no rows):
        what a flashboard tile's chart is checked against when it is saved. Errors as ``run_async``'s."""
        empty = replace(guarded, sql=guarded.limited_sql(0))
        return (await self.run_async(tenant_id, empty, limit=1)).columns

    def write_parquet(
        self,
        tenant_id: str,
        guarded: GuardedQuery,
        path: Path,
        *,
        max_rows: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        """Write a guarded query's result into one parquet file at ``path`` (a transform's staged output), in a
        query process; its row count. More than ``max_rows`` rows fail it. When ``cancelled()`` turns true the
        process is killed and ``isolation.CallCancelled`` raised."""
        deadline = time.monotonic() + self.limits.timeout_s
        request = {
            **self._statement(tenant_id, guarded, max_rows + 1),
            "op": "parquet",
            "path": str(path),
            "max_rows": max_rows,
        }
        header, _ = self._pool.call(tenant_id, request, deadline=deadline, cancelled=cancelled)
        return int(header["rows"])

    def locked_connection(self, tenant_id: str) -> duckdb.DuckDBPyConnection:
        """A fresh locked instance over the organization's current tables, in this process (tests drive it)."""
        lake = self.lake(tenant_id)
        return open_locked_connection(lake, lake.manifests(), self.limits)

    def warm(self) -> list[int]:
        """Have every query process ready now (each starts in ~0.6 s) rather than within the first queries' time;
        their ids."""
        return self._pool.warm()

    def process_ids(self) -> list[int]:
        """The running query processes (for tests and operators)."""
        return self._pool.pids()

    def close(self) -> None:
        """Stop the query processes (a later query starts them again)."""
        self._pool.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _statement(self, tenant_id: str, guarded: GuardedQuery, row_limit: int) -> dict[str, Any]:
        return {
            "tenant": tenant_id,
            "sql": guarded.limited_sql(row_limit),
            "tables": [[t.layer, t.dataset, t.table] for t in sorted(guarded.tables)],
            "loc": list(guarded.loc),
            "limit_s": self.limits.timeout_s,
        }

    def _rows_request(self, tenant_id: str, guarded: GuardedQuery, limit: int | None) -> tuple[dict[str, Any], float]:
        deadline = time.monotonic() + self.limits.timeout_s
        row_limit = min(limit or self.limits.row_cap, self.limits.row_cap)
        request = {**self._statement(tenant_id, guarded, row_limit + 1), "op": "rows", "row_limit": row_limit}
        return request, deadline


def shared_lake_engine(ctx: ActionContext) -> LakeQueryEngine:
    """The process's one lake engine, as a running kind gets it (``generate_query``, ``explain_schema``,
    ``create_flashboard``): the one the process made (``ProcessServices.lake_engine``: the API's, the refresher's),
    else one over the runtime's data directory with the settings' limits, made now and closed with the runtime."""
    from virtuousai.config import get_settings

    def make() -> LakeQueryEngine:
        settings = get_settings()
        limits = QueryLimits.from_settings(settings)
        return LakeQueryEngine(ctx.data_dir / "lake", limits, processes=settings.query_processes)

    return ctx.shared.get(LakeQueryEngine, make)


def _result(header: dict[str, Any], body: bytes) -> QueryResult:
    columns = tuple(ResultColumn(str(name), str(kind)) for name, kind in header["columns"])
    return QueryResult(columns, body, truncated=bool(header["truncated"]), elapsed_ms=float(header["elapsed_ms"]))
