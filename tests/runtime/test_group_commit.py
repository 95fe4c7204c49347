"""Group commit: the outcomes of runs that finish together are recorded in one write, and every run keeps its own
fencing guard inside it (a stale token changes nothing and is reported lost on its own)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tests.runtime.conftest import Harness
from virtuousai.runtime.recorder import OutcomeRecorder
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import Finish, finish_runs
from virtuousai.store.drivers import ClaimedRun, Wakeup, hub_for
from virtuousai.store.engine import transaction
from virtuousai.timeutil import utcnow


async def claim(harness: Harness, count: int) -> list[ClaimedRun]:
    for n in range(count):
        await harness.create("echo", {"n": n})
    claimed = await harness.queue.claim(owner="w", limit=count, org_limit=1000, lease_s=60)
    assert len(claimed) == count
    return sorted(claimed, key=lambda run: run.id)


def completed(run: ClaimedRun) -> Finish:
    return Finish(run, RunStatus.COMPLETED, {"attempt": run.attempt}, output={"n": run.id})


async def test_one_write_records_every_owned_run_and_nothing_for_a_lost_lease(harness: Harness) -> None:
    first, stolen, last = await claim(harness, 3)
    # Another claimer took the middle run behind our back: its token moved on.
    async with transaction(harness.sessions) as session:
        await session.execute(
            sa.update(ActionRun)
            .where(ActionRun.id == stolen.id)
            .values(lease_token=ActionRun.lease_token + 1, lease_owner="thief")
        )
    stolen_events = len(await harness.events(stolen.id))

    async with harness.driver.batch_session(harness.sessions) as session:
        moved = await finish_runs(session, [completed(run) for run in (first, stolen, last)], now=utcnow())

    assert moved == {first.id, last.id}
    for run in (first, last):
        row = await harness.get(run.id)
        assert (row.status, row.output, row.lease_owner, row.lease_expires_at) == (
            RunStatus.COMPLETED,
            {"n": run.id},
            None,
            None,
        )
        assert row.finished_at is not None
        events = await harness.events(run.id)
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[-1].data == {"from": "RUNNING", "to": "COMPLETED", "attempt": 1}
    row = await harness.get(stolen.id)
    assert (row.status, row.lease_owner, row.output, row.finished_at) == (RunStatus.RUNNING, "thief", None, None)
    assert len(await harness.events(stolen.id)) == stolen_events


async def test_outcomes_that_arrive_together_share_one_transaction(harness: Harness) -> None:
    runs = await claim(harness, 5)
    recorder = OutcomeRecorder(harness.sessions, harness.driver)

    recorded = await asyncio.gather(*(recorder.record(completed(run)) for run in runs))

    assert recorded == [True] * 5
    rows = [await harness.get(run.id) for run in runs]
    assert {row.status for row in rows} == {RunStatus.COMPLETED}
    # One transaction: every run got the same finish time.
    assert len({row.finished_at for row in rows}) == 1


async def test_every_outcome_publishes_its_wake_up_with_its_parent_to_this_process_at_commit(harness: Harness) -> None:
    [run] = await claim(harness, 1)
    hub = hub_for(harness.engine.url)
    heard: asyncio.Queue[Wakeup] = asyncio.Queue()
    unsubscribe = hub.subscribe(heard.put_nowait)
    listener = asyncio.create_task(harness.driver.listen(hub))
    try:
        if not is_sqlite(harness):
            # PostgreSQL delivers through LISTEN: wait until the listener says it is connected.
            await asyncio.wait_for(_next(heard, "enqueued"), timeout=10)
        await OutcomeRecorder(harness.sessions, harness.driver).record(completed(run))
        wakeup = await asyncio.wait_for(_next(heard, "finished"), timeout=10)
    finally:
        listener.cancel()
        unsubscribe()
    assert (wakeup.run_id, wakeup.tenant_id, wakeup.parent_run_id, wakeup.local) == (run.id, run.tenant_id, "", True)


async def _next(heard: asyncio.Queue[Wakeup], topic: str) -> Wakeup:
    while True:
        wakeup = await heard.get()
        if wakeup.topic == topic:
            return wakeup


def is_sqlite(harness: Harness) -> bool:
    return harness.engine.dialect.name == "sqlite"


async def test_a_failing_group_falls_back_to_one_write_per_outcome(harness: Harness) -> None:
    if is_sqlite(harness):
        pytest.skip("needs a value PostgreSQL refuses: jsonb cannot store U+0000")
    good, bad = await claim(harness, 2)
    recorder = OutcomeRecorder(harness.sessions, harness.driver)
    poisoned = Finish(bad, RunStatus.COMPLETED, {"attempt": 1}, output={"text": "\u0000"})

    results = await asyncio.gather(recorder.record(completed(good)), recorder.record(poisoned), return_exceptions=True)

    assert results[0] is True
    assert isinstance(results[1], Exception)
    assert (await harness.get(good.id)).status is RunStatus.COMPLETED
    # The run whose outcome could not be written stays RUNNING: its lease runs out and the watchdog moves it on.
    assert (await harness.get(bad.id)).status is RunStatus.RUNNING


@pytest.mark.parametrize(
    "wakeup",
    [
        Wakeup("enqueued"),
        Wakeup("enqueued", "run_01"),
        Wakeup("cancel", "run_01"),
        Wakeup("finished", "run_01", tenant_id="org_01"),
        Wakeup("finished", "run_01", tenant_id="org_01", parent_run_id="arun_01"),
        Wakeup("finished", "run_01", tenant_id="org_01", parent_run_id="arun_01", publisher="p12x0a0b0c"),
    ],
)
def test_a_wake_up_survives_its_notify_payload(wakeup: Wakeup) -> None:
    assert Wakeup.decode(wakeup.encode()) == wakeup


def test_a_short_or_unknown_payload_decodes_to_what_it_says() -> None:
    assert Wakeup.decode("finished:run_01") == Wakeup("finished", "run_01", publisher="")
    assert not Wakeup.decode("finished:run_01").local  # type: ignore[union-attr]
    assert Wakeup.decode("something-else:run_01") is None
