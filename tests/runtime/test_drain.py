"""SIGTERM drains a ``vai worker`` without losing a run (PostgreSQL, real processes): it stops claiming, lets
short runs finish, releases long ones back to PENDING with their attempt given back, prints ``worker stopped`` and
exits 0; another worker then completes what was released."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from tests.runtime.worker_processes import STOPPED_LINE, WorkerProcess, worker_env
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun

DRAIN_TIMEOUT_S = 1.5
SHORT_S = 0.6  # finishes well inside the drain timeout
LONG_S = 3.0  # does not


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Worker processes share a database: PostgreSQL only."""
    return str(request.param)


async def test_sigterm_finishes_short_runs_releases_long_ones_and_loses_none(
    harness: Harness, db_url: str, tmp_path: Any
) -> None:
    # A long lease: released runs must come back through the drain, not through the watchdog.
    env = worker_env(
        db_url,
        tmp_path / "var",
        lease_s=30,
        poll_interval_s=0.1,
        drain_timeout_s=DRAIN_TIMEOUT_S,
        per_org_concurrency=100,
    )
    draining = await WorkerProcess.start("draining", env, tmp_path, concurrency=6)
    successor: WorkerProcess | None = None
    try:
        await draining.wait_ready()
        short = [await harness.create("sleep", {"seconds": SHORT_S}) for _ in range(3)]
        long = [await harness.create("sleep", {"seconds": LONG_S}) for _ in range(3)]

        async def all_running() -> bool:
            runs = [await harness.get(run_id) for run_id in short + long]
            return all(r.status is RunStatus.RUNNING and r.lease_owner == draining.name for r in runs)

        await eventually(all_running, timeout=20, interval=0.01, what="the worker to run all six")
        # Queued behind a full worker: a worker that is still claiming would take them as slots free up.
        later = [await harness.create("echo", {"n": n}) for n in range(3)]
        draining.terminate()
        terminated_at = datetime.now(UTC)
        code, stdout = await draining.wait_exit(timeout=DRAIN_TIMEOUT_S + 20)
        assert code == 0, draining.log_tail()
        assert stdout[-1] == STOPPED_LINE

        for run_id in short:
            run = await harness.get(run_id)
            assert (run.status, run.attempt, run.output) == (RunStatus.COMPLETED, 1, {"slept_s": SHORT_S})
            assert run.finished_at is not None and run.finished_at > terminated_at  # it was given the time
            assert await transitions(harness, run_id) == [
                (None, "PENDING", None, None),
                ("PENDING", "RUNNING", draining.name, None),
                ("RUNNING", "COMPLETED", None, None),
            ]
        for run_id in long:
            run = await harness.get(run_id)
            assert (run.status, run.attempt, run.lease_owner, run.output) == (RunStatus.PENDING, 0, None, None)
            assert await transitions(harness, run_id) == [
                (None, "PENDING", None, None),
                ("PENDING", "RUNNING", draining.name, None),
                ("RUNNING", "PENDING", None, "released"),
            ]
            released = (await harness.events(run_id))[-1]
            assert released.data["attempt"] == 1
            # Released when the drain timeout ran out, not before.
            assert (released.created_at - terminated_at).total_seconds() >= DRAIN_TIMEOUT_S - 0.1
        for run_id in later:
            run = await harness.get(run_id)
            assert (run.status, run.attempt) == (RunStatus.PENDING, 0)
            assert await transitions(harness, run_id) == [(None, "PENDING", None, None)]

        successor = await WorkerProcess.start("successor", env, tmp_path, concurrency=6)
        await successor.wait_ready()
        finished: dict[str, ActionRun] = {}
        for run_id in short + long + later:
            finished[run_id] = await harness.wait_for(run_id, {RunStatus.COMPLETED}, timeout=LONG_S + 20)
        for run_id in long:
            # The attempt given back: the successor's run of it is attempt 1 again.
            assert (finished[run_id].attempt, finished[run_id].output) == (1, {"slept_s": LONG_S})
            assert (await transitions(harness, run_id))[-2:] == [
                ("PENDING", "RUNNING", successor.name, None),
                ("RUNNING", "COMPLETED", None, None),
            ]
        successor.terminate()
        code, stdout = await successor.wait_exit()
        assert code == 0 and stdout[-1] == STOPPED_LINE
    finally:
        await draining.ensure_dead()
        if successor is not None:
            await successor.ensure_dead()


async def transitions(harness: Harness, run_id: str) -> list[tuple[str | None, str, str | None, str | None]]:
    return [
        (e.data["from"], e.data["to"], e.data.get("worker"), e.data.get("reason"))
        for e in await harness.events(run_id)
        if e.kind == "status"
    ]
