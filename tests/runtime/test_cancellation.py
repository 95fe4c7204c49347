"""Cancellation: a pending run at once; a running run that cooperates; a stuck run forced after the grace period;
and draining a worker on shutdown."""

from __future__ import annotations

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from virtuousai.actions.service import ActionRunService
from virtuousai.runtime.states import RunStatus


async def cancel(harness: Harness, run_id: str) -> None:
    async with harness.sessions() as session:
        await ActionRunService(session, harness.tenant, harness.registry).cancel(run_id)


async def test_cancelling_a_pending_run_ends_it_at_once(harness: Harness) -> None:
    run_id = await harness.create("echo", {})
    await cancel(harness, run_id)
    run = await harness.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.attempt == 0 and run.started_at is None
    harness.start_worker()
    # A worker never picks it up: the claim only sees PENDING rows.
    other = await harness.create("echo", {"after": True})
    await harness.wait_for(other, {RunStatus.COMPLETED})
    assert (await harness.get(run_id)).status is RunStatus.CANCELLED


async def test_a_running_run_that_checks_its_token_stops_promptly(harness: Harness) -> None:
    run_id = await harness.create("sleep", {"seconds": 30})
    harness.start_worker()
    await harness.wait_for(run_id, {RunStatus.RUNNING})
    await cancel(harness, run_id)
    run = await harness.wait_for(run_id, {RunStatus.CANCELLED}, timeout=5)
    assert run.cancel_requested_at is not None
    assert run.error == {"type": "Cancelled", "message": "cancelled on request"}
    events = await harness.events(run_id)
    assert [e.kind for e in events] == ["status", "status", "cancel_requested", "status"]
    assert events[-1].data["forced"] is False


async def test_a_stuck_run_that_ignores_cancellation_is_abandoned_after_the_grace_period(harness: Harness) -> None:
    run_id = await harness.create("test_stuck", {"seconds": 5})
    worker = harness.start_worker()
    await harness.wait_for(run_id, {RunStatus.RUNNING})
    await cancel(harness, run_id)
    run = await harness.wait_for(run_id, {RunStatus.CANCELLED}, timeout=4)
    assert run.finished_at is not None and run.cancel_requested_at is not None
    # Not before the grace period (the request reached the worker, then cancel_grace_s passed) ...
    assert (run.finished_at - run.cancel_requested_at).total_seconds() >= harness.settings.cancel_grace_s
    # ... and long before the action would have returned by itself.
    assert (run.finished_at - run.cancel_requested_at).total_seconds() < 3
    assert (await harness.events(run_id))[-1].data["forced"] is True
    # The abandoned thread holds no worker slot.
    assert run_id not in worker.in_flight


async def test_draining_lets_short_runs_finish_and_releases_the_rest(harness: Harness) -> None:
    long_run = await harness.create("sleep", {"seconds": 30})
    worker = harness.start_worker()
    await harness.wait_for(long_run, {RunStatus.RUNNING})
    short_run = await harness.create("sleep", {"seconds": 0.1})
    await harness.wait_for(short_run, {RunStatus.RUNNING})
    worker.stop()
    await harness.stop_workers()
    assert (await harness.get(short_run)).status is RunStatus.COMPLETED
    released = await harness.get(long_run)
    assert released.status is RunStatus.PENDING
    assert released.attempt == 0, "a release gives the attempt back"
    assert released.lease_owner is None
    assert (await harness.events(long_run))[-1].data["reason"] == "released"
    # Another worker picks it up again.
    harness.start_worker()
    await eventually(lambda: _status_is(harness, long_run, RunStatus.RUNNING), what="the released run to run again")


async def _status_is(harness: Harness, run_id: str, status: RunStatus) -> bool:
    return (await harness.get(run_id)).status is status
