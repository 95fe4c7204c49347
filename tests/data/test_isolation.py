"""Query processes: memory and time bounded by the operating system whatever the SQL, the pool heals, nothing
is left running. Driven through ``LakeQueryEngine`` with real processes; the attacks through HTTP against a real
``vai serve`` are in test_query_isolation.py."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.data.conftest import make_context, publish_rows
from tests.data.isolation_helpers import (
    address_space_limit,
    alive,
    busy,
    query_processes,
    status_kb,
)
from tests.helpers import eventually, eventually_sync
from virtuousai.data.engine import LakeQueryEngine, QueryLimits, QueryMemoryExceeded, QueryTimedOut
from virtuousai.data.errors import QueriesBusy
from virtuousai.data.isolation import address_space_allowance, kill_grace_s
from virtuousai.data.kinds import SqlTransformInput, sql_transform
from virtuousai.data.lake import TableRef, TenantLake
from virtuousai.runtime.context import Cancelled

# A native call DuckDB cannot interrupt: one global regexp_replace over a 120 MB string (60 M matches), about 10 s
# here and ~300 MB of memory. (A 600 MB `repeat` was used before: a machine with faster memory built it inside the
# kill grace. DuckDB interrupts some long scalar calls, levenshtein for one, so not every slow function will do.)
LONG_NATIVE_CALL = "SELECT length(regexp_replace(repeat('ab', 60000000), 'a', 'xy', 'g')) AS n"
SPIN = "SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3"


def _engine(lake_dir: Path, **limits: Any) -> LakeQueryEngine:
    processes = limits.pop("processes", 2)
    return LakeQueryEngine(lake_dir, QueryLimits(threads=1, **limits), processes=processes)


@pytest.fixture
def lake_dir(tmp_path: Path) -> Iterator[Path]:
    lake_dir = tmp_path / "lake"
    publish_rows(TenantLake(lake_dir, "org_a"), "bronze.shop.orders", [{"id": i} for i in range(10)])
    yield lake_dir
    eventually_sync(lambda: not query_processes(str(lake_dir)), timeout=10, what="every query process to end")


def _the_process(engine: LakeQueryEngine) -> int:
    """The one process of a one-process engine, started and ready."""
    (pid,) = engine.warm()
    return pid


def test_an_allocation_past_the_address_space_answers_query_memory_and_the_process_goes_on(lake_dir: Path) -> None:
    with closing(_engine(lake_dir, memory_limit="256MB", timeout_s=10, processes=1)) as engine:
        pid = _the_process(engine)
        limit = address_space_limit(pid)
        assert limit is not None and limit >= status_kb(pid, "VmSize") * 1024
        assert limit - status_kb(pid, "VmSize") * 1024 < address_space_allowance(engine.limits) + 2**30
        started = time.monotonic()
        # One 2 GB string: DuckDB's memory_limit does not cover it; the address-space limit does.
        with pytest.raises(QueryMemoryExceeded, match="memory"):
            engine.query("org_a", "SELECT length(repeat('x', 2000000000))")
        assert time.monotonic() - started < 2
        assert status_kb(pid, "VmHWM") < 1024 * 1024  # it never held the 2 GB
        assert engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders").rows == [[10]]
        assert engine.process_ids() == [pid]  # DuckDB recovered: same process, no restart


def test_a_native_call_past_the_deadline_is_killed_within_the_grace_and_replaced(lake_dir: Path) -> None:
    # 2 s: the call takes ~3.5 s, and a busy machine's scheduling hiccups stay well inside the limit.
    with closing(_engine(lake_dir, memory_limit="512MB", timeout_s=2.0, processes=1)) as engine:
        pid = _the_process(engine)
        started = time.monotonic()
        with pytest.raises(QueryTimedOut, match=r"longer than 2 s and its process was stopped") as caught:
            engine.query("org_a", LONG_NATIVE_CALL)
        elapsed = time.monotonic() - started
        assert 2.0 <= elapsed <= 2.0 + kill_grace_s(2.0) + 0.3 <= 1.5 * 2.0
        assert caught.value.errors[0]["loc"] == ["body", "sql"]
        assert not alive(pid)
        assert engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders").rows == [[10]]  # healed
        assert engine.process_ids() != [pid]


def test_an_interruptible_query_stops_at_the_deadline_and_keeps_its_process(lake_dir: Path) -> None:
    with closing(_engine(lake_dir, timeout_s=0.5, processes=1)) as engine:
        pid = _the_process(engine)
        started = time.monotonic()
        with pytest.raises(QueryTimedOut, match=r"longer than 0\.5 s and was stopped"):
            engine.query("org_a", SPIN)
        assert time.monotonic() - started < 0.5 * 1.5
        assert engine.process_ids() == [pid]


def test_a_process_killed_mid_query_answers_query_memory_and_the_pool_heals(lake_dir: Path) -> None:
    with closing(_engine(lake_dir, timeout_s=30, processes=1)) as engine:
        pid = _the_process(engine)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                engine.query("org_a", SPIN)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        eventually_sync(busy(pid), timeout=10, what="the query to run")
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        thread.join(10)
        (error,) = outcome
        assert isinstance(error, QueryMemoryExceeded) and "SIGKILL" in error.detail
        assert engine.query("org_a", "SELECT 2").rows == [[2]]


def test_a_result_larger_than_allowed_answers_query_memory(lake_dir: Path) -> None:
    with closing(_engine(lake_dir, result_max_bytes=1024 * 1024, processes=1)) as engine:
        with pytest.raises(QueryMemoryExceeded, match=r"MiB of JSON, more than the 1\.0 MiB"):
            engine.query("org_a", "SELECT repeat('x', 1000) AS s FROM range(5000)")
        assert len(engine.query("org_a", "SELECT repeat('x', 1000) AS s FROM range(500)").rows) == 500


def test_one_organization_cannot_hold_every_process(lake_dir: Path) -> None:
    publish_rows(TenantLake(lake_dir, "org_b"), "bronze.shop.orders", [{"id": 1}])
    with closing(_engine(lake_dir, memory_limit="512MB", timeout_s=2.0, processes=2)) as engine:
        checks = [busy(pid) for pid in engine.warm()]  # both ready: what is measured is the sharing
        first: list[BaseException] = []
        second: list[BaseException] = []
        # org_a's first query holds one process until it is killed, 2.4 s after it started …
        holding = threading.Thread(target=lambda: _record(first, engine.query, "org_a", LONG_NATIVE_CALL))
        holding.start()
        eventually_sync(lambda: any(check() for check in checks), timeout=10, what="org_a's query to run")
        # … so its second, 1 of 2 processes being its share, waits past its own 2 s deadline and never starts …
        started = time.monotonic()
        waiting = threading.Thread(target=lambda: _record(second, engine.query, "org_a", "SELECT 1"))
        waiting.start()
        # … while another organization is served at once.
        assert engine.query("org_b", "SELECT count(*) FROM bronze.shop.orders").rows == [[1]]
        served_in = time.monotonic() - started
        waiting.join(10)
        waited = time.monotonic() - started
        holding.join(10)
        assert served_in < 1.0
        (busy_error,) = second
        assert isinstance(busy_error, QueriesBusy), busy_error
        assert "this organization's queries hold 1 of the 2" in busy_error.detail
        assert 2.0 <= waited <= 3.0
        assert isinstance(first[0], QueryTimedOut)


def _record(outcome: list[BaseException], call: Any, *args: Any) -> None:
    try:
        call(*args)
    except BaseException as exc:
        outcome.append(exc)


def test_closing_stops_every_process_and_so_does_a_dropped_engine(lake_dir: Path) -> None:
    engine = _engine(lake_dir, processes=2)
    engine.query("org_a", "SELECT 1")
    eventually_sync(lambda: len(query_processes(str(lake_dir))) == 2, timeout=30, what="the spare process to start")
    pids = set(engine.process_ids())
    assert pids == query_processes(str(lake_dir))
    engine.close()
    assert not any(alive(pid) for pid in pids)
    assert engine.query("org_a", "SELECT 3").rows == [[3]]  # usable again: processes start anew
    del engine
    gc.collect()
    eventually_sync(lambda: not query_processes(str(lake_dir)), timeout=10, what="a dropped engine's processes to end")


# --- sql_transform: its own process and limits ----------------------------------------------------------------


async def _transform(tmp_path: Path, sql: str, **options: Any) -> Any:
    ctx = make_context(tmp_path / "var", tenant_id="org_a", options=options)
    publish_rows(TenantLake(ctx.data_dir / "lake", "org_a"), "bronze.shop.orders", [{"id": 1}])
    inputs = SqlTransformInput.model_validate({"sql": sql, "target": {"layer": "gold", "dataset": "x", "table": "y"}})
    return ctx, sql_transform.execute(ctx, inputs)


async def test_a_cancelled_transform_kills_its_process(tmp_path: Path) -> None:
    ctx, running = await _transform(tmp_path, SPIN)
    marker = str(ctx.data_dir / "lake")
    task = asyncio.ensure_future(running)
    await eventually(lambda: bool(query_processes(marker)), timeout=30, what="the transform's process")
    (pid,) = query_processes(marker)
    # Started (it caps its address space once set up, then says it is ready), then burning CPU on the query.
    await eventually(lambda: address_space_limit(pid) is not None, timeout=30, what="the process to start")
    await eventually(busy(pid), timeout=30, what="the transform's query to run")
    ctx.cancel.cancel("test")
    cancelled_at = time.monotonic()
    with pytest.raises(Cancelled):
        await task
    assert time.monotonic() - cancelled_at < 1
    assert not alive(pid) and not query_processes(marker)
    assert TenantLake(ctx.data_dir / "lake", "org_a").manifest(TableRef("gold", "x", "y")) is None


async def test_a_transform_has_its_own_time_and_memory_limits(tmp_path: Path) -> None:
    # The transform's 2 s count from its start, its process's start-up (~0.6 s) included.
    _, running = await _transform(tmp_path / "a", SPIN, transform_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match="longer than 2 s") as timed_out:
        await running
    assert time.monotonic() - started < 2 * 1.5
    assert timed_out.value.errors[0]["loc"] == ["inputs", "sql"]

    _, running = await _transform(
        tmp_path / "b", "SELECT length(repeat('x', 2000000000)) AS n", transform_memory_limit="256MB"
    )
    with pytest.raises(QueryMemoryExceeded):
        await running
    assert not query_processes(str(tmp_path))
