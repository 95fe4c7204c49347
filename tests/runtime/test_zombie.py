"""The zombie, with real processes (PostgreSQL): a worker paused (SIGSTOP) past its lease while it runs a run,
another worker takes the run and completes it, then the paused one resumes (SIGCONT) and carries on as if nothing
happened. Its writes must change nothing: the run's status, output and event log stay the second worker's, and the
effect is committed once.

The run is of ``test_effect_blocking``: a sync kind in a thread that never looks at its cancellation token, so the
resumed zombie really goes on to apply its effect and to record its outcome.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from tests.runtime.kinds_effects import create_effect_tables, read_effects
from tests.runtime.worker_processes import STOPPED_LINE, WorkerProcess, worker_env
from virtuousai.runtime.states import RunStatus
from virtuousai.store.drivers.postgres import asyncpg_dsn

LEASE_S = 2.0


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Worker processes share a database: PostgreSQL only."""
    return str(request.param)


async def snapshot(harness: Harness, run_id: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    run = await harness.get(run_id)
    row = {
        column: getattr(run, column)
        for column in (
            "status",
            "output",
            "error",
            "attempt",
            "lease_token",
            "lease_owner",
            "lease_expires_at",
            "started_at",
            "finished_at",
            "updated_at",
            "last_event_seq",
        )
    }
    events = [(e.seq, e.kind, e.data, e.created_at) for e in await harness.events(run_id)]
    return row, events


async def test_a_resumed_zombie_worker_changes_nothing(harness: Harness, db_url: str, tmp_path: Any) -> None:
    dsn = asyncpg_dsn(sa.make_url(db_url))
    await create_effect_tables(dsn)
    env = worker_env(db_url, tmp_path / "var", lease_s=LEASE_S, poll_interval_s=0.1, per_org_concurrency=100)
    zombie = await WorkerProcess.start("zombie", env, tmp_path, concurrency=1)
    thief: WorkerProcess | None = None
    try:
        await zombie.wait_ready()
        run_id = await harness.create("test_effect_blocking", {"work_s": 0.2, "hold_first_attempt_s": 1.5})

        async def zombie_started() -> bool:
            _, attempts = await read_effects(dsn)
            return any(a.worker_pid == zombie.pid and a.outcome == "started" for a in attempts)

        await eventually(zombie_started, timeout=20, interval=0.01, what="the zombie to start attempt 1")
        zombie.pause()  # mid-attempt, before its effect: its lease will run out while it sleeps
        zombie_run = await harness.get(run_id)
        assert (zombie_run.status, zombie_run.attempt, zombie_run.lease_owner) == (RunStatus.RUNNING, 1, zombie.name)
        zombie_token = zombie_run.lease_token

        thief = await WorkerProcess.start("thief", env, tmp_path, concurrency=1)
        await thief.wait_ready()
        await harness.wait_for(run_id, {RunStatus.COMPLETED}, timeout=30)
        before_resume = await snapshot(harness, run_id)

        zombie.resume()

        # The zombie goes on: its thread applies the effect (a duplicate by now) and its executor tries to record
        # the outcome, or its heartbeat finds the lease gone first. Either way it logs the lost lease.
        async def zombie_tried() -> bool:
            _, attempts = await read_effects(dsn)
            applied_again = any(a.worker_pid == zombie.pid and a.outcome != "started" for a in attempts)
            return applied_again and f"run {run_id}: lease {zombie_token} lost" in zombie.log()

        await eventually(zombie_tried, timeout=20, what="the resumed zombie to try its writes")
        zombie.terminate()
        code, stdout = await zombie.wait_exit()
        assert code == 0 and STOPPED_LINE in stdout, zombie.log_tail()

        assert await snapshot(harness, run_id) == before_resume
        run, events = before_resume
        assert run["status"] is RunStatus.COMPLETED
        assert run["attempt"] == 2 and run["lease_token"] == zombie_token + 1
        assert run["output"] == {"effect": "applied", "attempt": 2, "worker_pid": thief.pid}
        # The log: the zombie's claim, the watchdog's re-queue, then only the thief.
        transitions = [(data["from"], data["to"], data.get("worker"), data.get("reason")) for _, _, data, _ in events]
        assert transitions == [
            (None, "PENDING", None, None),
            ("PENDING", "RUNNING", zombie.name, None),
            ("RUNNING", "PENDING", None, "lease_expired"),
            ("PENDING", "RUNNING", thief.name, None),
            ("RUNNING", "COMPLETED", None, None),
        ]

        effects, attempts = await read_effects(dsn)
        assert [(e.idempotency_key, e.attempt, e.worker_pid) for e in effects] == [(run_id, 2, thief.pid)]
        by_worker = sorted((a.worker_pid == zombie.pid, a.attempt, a.outcome) for a in attempts)
        assert by_worker == [
            (False, 2, "applied"),
            (False, 2, "started"),
            (True, 1, "duplicate"),  # the zombie's effect, after the steal: recognised by its idempotency key
            (True, 1, "started"),
        ]
    finally:
        await zombie.ensure_dead()
        if thief is not None:
            await thief.ensure_dead()
