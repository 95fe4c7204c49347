"""The worker loop end to end: completion, failures and retries, timeouts, cancellation, priorities, the
per-organization limit and draining."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from virtuousai.runtime.cancellation import cancel_run
from virtuousai.runtime.creation import RunRequest, create_runs
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.store.drivers import ClaimedRun


async def test_a_run_goes_pending_running_completed_with_an_event_per_transition(harness: Harness) -> None:
    run_id = await harness.create("echo", {"hello": "world"})
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.COMPLETED})
    assert run.output == {"hello": "world"}
    assert run.attempt == 1
    assert run.error is None
    assert run.started_at is not None and run.finished_at is not None
    assert run.lease_owner is None and run.lease_expires_at is None
    events = await harness.events(run_id)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [(e.data["from"], e.data["to"]) for e in events] == [
        (None, "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]


async def test_a_failure_after_the_last_attempt_records_the_error_type_and_message(harness: Harness) -> None:
    run_id = await harness.create("fail", {"error_type": "QuotaExceeded", "message": "too many"})
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.FAILED})
    assert run.error == {"type": "QuotaExceeded", "message": "too many"}
    assert run.attempt == 1 == run.max_attempts


async def test_a_failed_attempt_is_retried_after_a_backoff_and_can_then_succeed(harness: Harness) -> None:
    run_id = await harness.create("fail", {"succeed_on_attempt": 2}, max_attempts=2)
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.COMPLETED})
    assert run.attempt == 2
    assert run.output == {"attempt": 2, "data": {}}
    events = await harness.events(run_id)
    retry = next(e for e in events if e.data.get("reason") == "retry")
    assert retry.data["from"] == "RUNNING" and retry.data["to"] == "PENDING"
    assert retry.data["error"]["type"] == "DemoError"
    # fail's policy: 1 s ± 20 % before the second attempt.
    assert 0.8 <= retry.data["retry_in_s"] <= 1.2
    second_start = next(e for e in events if e.data.get("to") == "RUNNING" and e.data.get("attempt") == 2)
    assert (second_start.created_at - retry.created_at).total_seconds() >= retry.data["retry_in_s"] - 0.01


async def test_a_run_over_its_timeout_fails_with_a_timeout_error(harness: Harness) -> None:
    run_id = await harness.create("sleep", {"seconds": 30}, timeout_s=0.2, max_attempts=1)
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.FAILED})
    assert run.error is not None and run.error["type"] == "Timeout"


async def test_higher_priority_runs_start_first(harness: Harness) -> None:
    low = await harness.create("echo", {"n": "low"}, priority=-5)
    high = await harness.create("echo", {"n": "high"}, priority=10)
    middle = await harness.create("echo", {"n": "middle"})
    harness.start_worker(worker_concurrency=1, claim_batch_size=1)
    for run_id in (low, high, middle):
        await harness.wait_for(run_id, {RunStatus.COMPLETED})
    starts = {}
    for run_id in (low, high, middle):
        started_at = (await harness.get(run_id)).started_at
        assert started_at is not None
        starts[run_id] = started_at
    assert sorted(starts, key=lambda r: starts[r]) == [high, middle, low]


async def test_one_organization_cannot_hold_more_than_its_limit_of_running_runs(harness: Harness) -> None:
    other = await harness.new_tenant()
    flood = [await harness.create("sleep", {"seconds": 30}) for _ in range(5)]
    theirs = [await harness.create("sleep", {"seconds": 30}, tenant=other) for _ in range(2)]
    harness.start_worker(worker_concurrency=6, per_org_concurrency=2)

    async def running_per_org() -> dict[str, int] | None:
        async with harness.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(ActionRun.tenant_id, sa.func.count())
                    .where(ActionRun.status == RunStatus.RUNNING)
                    .group_by(ActionRun.tenant_id)
                )
            ).all()
            await session.rollback()
        counts = {tenant: n for tenant, n in rows}
        return counts if sum(counts.values()) >= 4 else None

    counts = await eventually(running_per_org, what="both organizations running")
    assert counts == {harness.tenant.tenant_id: 2, other.tenant_id: 2}
    # The flood's other runs are still waiting although the worker has free slots.
    pending = [r for r in flood if (await harness.get(r)).status is RunStatus.PENDING]
    assert len(pending) == 3
    assert [(await harness.get(r)).status for r in theirs] == [RunStatus.RUNNING] * 2


async def test_a_freed_slot_claims_again_only_while_runs_may_be_waiting(harness: Harness) -> None:
    # A 30 s poll: within this test only wake-ups and freed slots can start a claim. Two slots, one run per claim.
    worker = harness.start_worker(worker_concurrency=2, poll_interval_s=30.0)
    claims: asyncio.Queue[list[str]] = asyncio.Queue()  # what each claim took, in order
    claim = worker.queue.claim

    async def counted(**kwargs: Any) -> list[ClaimedRun]:
        claimed = await claim(**kwargs)
        claims.put_nowait([run.id for run in claimed])
        return claimed

    worker.queue.claim = counted  # type: ignore[method-assign]  (before the worker's task first runs)

    async def next_claim() -> list[str]:
        return await asyncio.wait_for(claims.get(), timeout=10)

    assert await next_claim() == []  # the worker's first claim finds the queue empty

    # An ``enqueued`` wake-up starts a claim: it takes the new run, and the next (the batch was full) finds nothing.
    slow = await harness.create("sleep", {"seconds": 30})
    assert [await next_claim(), await next_claim()] == [[slow], []]

    # The queue was found empty: the slot that ``slow`` frees when it is cancelled starts no claim ...
    async with harness.sessions() as session:
        await cancel_run(session, harness.tenant.tenant_id, slow, requested_by=None)
    await harness.wait_for(slow, {RunStatus.CANCELLED})
    await eventually(lambda: not worker.in_flight, what="the cancelled run's slot to be freed")
    # ... so the next claim is the one the next run's ``enqueued`` wake-up starts, and it finds that run.
    late = await harness.create("echo", {"n": "late"})
    assert [await next_claim(), await next_claim()] == [[late], []]
    await harness.wait_for(late, {RunStatus.COMPLETED})

    # Four runs in one transaction, one wake-up: a claim that took all it asked for leaves the worker expecting
    # more, so each freed slot claims the next at once (else they would wait for the 30 s poll).
    async with harness.sessions() as session:
        requests = [RunRequest("echo", {"n": i}) for i in range(4)]
        created = await create_runs(
            session, harness.registry, requests, tenant_id=harness.tenant.tenant_id, approval_overrides={}
        )
        await session.commit()
    for row in created.rows:
        await harness.wait_for(row["id"], {RunStatus.COMPLETED}, timeout=10)
