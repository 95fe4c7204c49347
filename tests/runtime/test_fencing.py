"""Fencing: once another worker holds the run, the old token's writes change nothing (the in-process zombie)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import LeaseLost, RunHandle, append_event, transition
from virtuousai.store.engine import transaction
from virtuousai.timeutil import utcnow


async def test_a_zombies_fenced_writes_change_nothing(harness: Harness) -> None:
    run_id = await harness.create("echo", {}, max_attempts=3)
    [zombie] = await harness.queue.claim(owner="zombie", limit=1, org_limit=100, lease_s=0.5)
    # The zombie pauses past its lease; the watchdog re-queues the run and a live worker takes it.
    later = utcnow() + timedelta(seconds=5)
    assert (await harness.watchdog().run_once(now=later)).requeued == 1
    far_later = later + timedelta(seconds=10)
    [live] = await harness.queue.claim(owner="live", limit=1, org_limit=100, lease_s=60, now=far_later)
    assert live.lease_token == zombie.lease_token + 1
    before = await harness.get(run_id)
    events_before = len(await harness.events(run_id))

    handle = RunHandle(run_id, harness.tenant.tenant_id, RunStatus.RUNNING)
    with pytest.raises(LeaseLost):
        async with transaction(harness.sessions) as session:
            await transition(session, handle, RunStatus.COMPLETED, token=zombie.lease_token, values={"output": {}})
    with pytest.raises(LeaseLost):
        async with transaction(harness.sessions) as session:
            await append_event(session, handle, "progress", {"zombie": True}, token=zombie.lease_token)
    assert await harness.queue.renew_leases({run_id: zombie.lease_token}, lease_s=60) == {}

    after = await harness.get(run_id)
    assert (after.status, after.lease_owner, after.lease_token, after.output) == (
        RunStatus.RUNNING,
        "live",
        live.lease_token,
        None,
    )
    assert after.lease_expires_at == before.lease_expires_at
    assert len(await harness.events(run_id)) == events_before

    # The live worker's write goes through.
    async with transaction(harness.sessions) as session:
        await transition(session, handle, RunStatus.COMPLETED, token=live.lease_token, values={"output": {"ok": 1}})
    assert (await harness.get(run_id)).status is RunStatus.COMPLETED


async def test_a_worker_that_loses_its_lease_stops_the_run_and_records_nothing(harness: Harness) -> None:
    run_id = await harness.create("sleep", {"seconds": 30})
    worker = harness.start_worker()
    await harness.wait_for(run_id, {RunStatus.RUNNING})
    # Another claimer took the run behind this worker's back (as after a long pause): the token moved on.
    async with transaction(harness.sessions) as session:
        await session.execute(
            sa.update(ActionRun)
            .where(ActionRun.id == run_id)
            .values(lease_token=ActionRun.lease_token + 1, lease_owner="thief")
        )

    async def dropped() -> bool:
        return run_id not in worker.in_flight

    # The next heartbeat (a third of the lease) finds the lease gone and the executor stops the run.
    await eventually(dropped, timeout=harness.settings.lease_s * 2, what="the worker to drop the run")
    run = await harness.get(run_id)
    assert (run.status, run.lease_owner, run.output) == (RunStatus.RUNNING, "thief", None)
