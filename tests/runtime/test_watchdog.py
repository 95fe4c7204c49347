"""LeaseWatchdog.run_once: expired leases are re-queued with backoff, failed after the last attempt, cancelled if
a cancel was requested; live leases are left alone."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from virtuousai.actions.service import ActionRunService
from virtuousai.runtime.states import RunStatus
from virtuousai.timeutil import utcnow


async def claim_as_ghost(harness: Harness, lease_s: float = 0.5) -> int:
    """Claim like a worker that then dies: nobody renews the lease."""
    claimed = await harness.queue.claim(owner="ghost", limit=10, org_limit=100, lease_s=lease_s)
    assert len(claimed) == 1
    return claimed[0].lease_token


async def test_an_expired_lease_is_requeued_with_backoff_then_failed_after_the_last_attempt(harness: Harness) -> None:
    run_id = await harness.create("echo", {}, max_attempts=2)
    watchdog = harness.watchdog()
    assert await claim_as_ghost(harness) == 1
    later = utcnow() + timedelta(seconds=5)

    counts = await watchdog.run_once(now=later)
    assert (counts.requeued, counts.failed) == (1, 0)
    run = await harness.get(run_id)
    assert run.status is RunStatus.PENDING
    assert run.error is not None and run.error["type"] == "LeaseExpired"
    assert run.lease_owner is None
    # echo's policy: 1 s ± 20 % after the first attempt.
    assert timedelta(seconds=0.8) <= run.available_at - later <= timedelta(seconds=1.2)

    # Not claimable before its backoff ends; then the second (last) attempt's worker dies too.
    assert await harness.queue.claim(owner="ghost", limit=10, org_limit=100, lease_s=0.5) == []
    claimed = await harness.queue.claim(owner="ghost", limit=10, org_limit=100, lease_s=0.5, now=run.available_at)
    assert [c.lease_token for c in claimed] == [2]
    counts = await watchdog.run_once(now=run.available_at + timedelta(seconds=5))
    assert (counts.requeued, counts.failed) == (0, 1)
    run = await harness.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.attempt == 2
    assert run.error == {"type": "LeaseExpired", "message": "the worker's lease on attempt 2 expired"}


async def test_a_live_lease_is_left_alone(harness: Harness) -> None:
    run_id = await harness.create("echo", {})
    await claim_as_ghost(harness, lease_s=60)
    counts = await harness.watchdog().run_once()
    assert counts.total == 0
    assert (await harness.get(run_id)).status is RunStatus.RUNNING


async def test_an_expired_run_with_a_cancel_request_is_cancelled_not_retried(harness: Harness) -> None:
    run_id = await harness.create("echo", {}, max_attempts=5)
    await claim_as_ghost(harness)
    async with harness.sessions() as session:
        await ActionRunService(session, harness.tenant, harness.registry).cancel(run_id)
    counts = await harness.watchdog().run_once(now=utcnow() + timedelta(seconds=5))
    assert counts.cancelled == 1
    assert (await harness.get(run_id)).status is RunStatus.CANCELLED


async def test_a_killed_workers_run_runs_again_and_completes(harness: Harness) -> None:
    run_id = await harness.create("echo", {"x": 1})
    await claim_as_ghost(harness, lease_s=0.2)
    harness.start_worker()
    watchdog = harness.watchdog()

    async def recovered() -> bool:
        await watchdog.run_once()
        return (await harness.get(run_id)).status is RunStatus.COMPLETED

    await eventually(recovered, timeout=10, interval=0.1, what="the orphaned run to complete")
    run = await harness.get(run_id)
    assert run.attempt == 2 and run.lease_token == 2
