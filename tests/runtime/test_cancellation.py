"""Cancellation: a pending run at once; a running run that cooperates; a stuck run forced after the grace period;
a run asked to stop while its timed-out attempt winds down (not retried); and draining a worker on shutdown."""

from __future__ import annotations

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from tests.runtime.kinds_for_tests import GATES, Gate
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


async def test_a_timed_out_run_that_stops_at_once_is_recorded_at_once(harness: Harness) -> None:
    """The grace period is how long an action may take to stop, not a wait: one that stops at its next await is
    recorded then (it took the whole grace, 10 s by default, for every timeout of an async kind)."""
    run_id = await harness.create("sleep", {"seconds": 30}, timeout_s=0.2, max_attempts=1)
    harness.start_worker(cancel_grace_s=30)
    run = await harness.wait_for(run_id, {RunStatus.FAILED}, timeout=5)
    assert run.error == {"type": "Timeout", "message": "exceeded its timeout of 0.2s"}


async def test_a_cancel_during_a_timed_out_attempts_grace_ends_the_run_instead_of_a_retry(harness: Harness) -> None:
    """The attempt's timeout trips its token first; the cancel request that comes while the action winds down must
    still be heard, and the failed attempt be the last: CANCELLED now, not PENDING for a retry 30 s away (to be
    cancelled only when claimed again)."""
    gate = GATES["slow-stop"] = Gate()
    try:
        run_id = await harness.create("test_slow_to_stop", {"gate": "slow-stop"}, timeout_s=0.2)
        worker = harness.start_worker(cancel_grace_s=20)
        await gate.reached()  # timed out: the token tripped, the action is in its cleanup
        await cancel(harness, run_id)
        await eventually(lambda: worker.in_flight[run_id].cancel_requested, what="the request to reach the worker")
        gate.open()
        run = await harness.wait_for(run_id, {RunStatus.CANCELLED, RunStatus.PENDING, RunStatus.FAILED})
    finally:
        GATES.pop("slow-stop").open()
    assert run.status is RunStatus.CANCELLED and run.attempt == 1, (run.status, run.attempt, run.error)
    assert run.error == {"type": "Cancelled", "message": "cancelled on request"}
    assert (await harness.events(run_id))[-1].data["error"]["type"] == "Timeout"


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
