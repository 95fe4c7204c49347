"""The run-queue drivers: concurrent claims never take the same run; batches respect limit and priority."""

from __future__ import annotations

import asyncio

from tests.runtime.conftest import Harness
from virtuousai.runtime.states import RunStatus


async def test_concurrent_claims_take_each_run_exactly_once(harness: Harness) -> None:
    run_ids = {await harness.create("echo", {"n": n}) for n in range(24)}

    async def claimer(name: str) -> list[str]:
        taken: list[str] = []
        while True:
            batch = await harness.queue.claim(owner=name, limit=3, org_limit=1000, lease_s=60)
            if not batch:
                return taken
            taken += [run.id for run in batch]

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    claimed = [run_id for taken in results for run_id in taken]
    assert sorted(claimed) == sorted(run_ids), "every run claimed exactly once"
    for run_id in run_ids:
        run = await harness.get(run_id)
        assert (run.status, run.attempt, run.lease_token) == (RunStatus.RUNNING, 1, 1)


async def test_a_batch_is_capped_and_ordered_by_priority(harness: Harness) -> None:
    low = await harness.create("echo", {"p": 0})
    high = await harness.create("echo", {"p": 5}, priority=5)
    top = await harness.create("echo", {"p": 9}, priority=9)
    batch = await harness.queue.claim(owner="w", limit=2, org_limit=1000, lease_s=60)
    assert [run.id for run in batch] == [top, high]
    assert (await harness.get(low)).status is RunStatus.PENDING
    assert all(run.event_seq == 2 for run in batch)
