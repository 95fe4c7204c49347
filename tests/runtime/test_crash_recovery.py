"""Crash recovery with real processes (PostgreSQL): three ``vai worker`` subprocesses execute 1,000 runs or more
while the test SIGKILLs one of them at random moments (and starts a replacement each time).

What must hold afterwards:
- every run is COMPLETED, with one terminal event, and its recorded output is its last attempt's;
- no run's effect is committed twice: each run applied its effect exactly once under its idempotency key, although
  executions did repeat (an attempt killed after its effect, before its outcome, runs again and is recognised as a
  duplicate — see ``kinds_effects``);
- each orphaned run is running again within one lease period of its lease's expiry: the watchdog re-queues it at
  its next pass (a third of the lease) and an idle slot claims it after the retry backoff.

The runs are enqueued as the workers take them (never more than a few batches waiting), so a re-queued run does not
wait behind a backlog and the time to its next start measures recovery, not queueing; the kills come at random
points of that progress, one worker down at a time, each a worker that holds a run lingering after its committed
effect (so a duplicate is certain, not left to chance), and the work goes on until the last kill. The random seed
is printed; set ``VAI_CRASH_SEED`` to replay a schedule (as far as the timing of processes allows).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from tests.runtime.kinds_effects import create_effect_tables, read_effects
from tests.runtime.worker_processes import WorkerProcess, worker_env
from virtuousai.actions.service import ActionRunService
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.store.drivers.postgres import asyncpg_dsn

RUNS = 1000
WORKERS = 3
CONCURRENCY = 12
KILLS = 5
BATCH = 10
MAX_WAITING = 2 * BATCH  # runs are enqueued BATCH at a time, whenever fewer than this are waiting
LEASE_S = 2.0
POLL_S = 0.2
BACKOFF_MAX_S = 0.2 * 1.2  # test_effect's RetryPolicy: backoff_max_s plus jitter
# One run per batch waits this long after its effect on its first attempt, so that a kill can land there for sure.
LINGER_S = 1.0
# Scheduling noise on a small shared machine (two cores, several test suites at once).
SLACK_S = 0.75


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Worker processes share a database: PostgreSQL only."""
    return str(request.param)


@dataclass(frozen=True)
class Orphan:
    """A run that was RUNNING under a worker when the worker was killed."""

    run_id: str
    attempt: int
    lease_expires_at: datetime
    killed_at: datetime


@dataclass(frozen=True)
class Recovery:
    orphan: Orphan
    requeued_at: datetime
    restarted_at: datetime

    def since_expiry(self, at: datetime) -> float:
        return (at - self.orphan.lease_expires_at).total_seconds()

    @property
    def since_kill(self) -> float:
        return (self.restarted_at - self.orphan.killed_at).total_seconds()


@pytest.mark.slow
async def test_killed_workers_lose_no_run_and_commit_no_effect_twice(
    harness: Harness, db_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("VAI_CRASH_SEED", random.randrange(2**32)))
    print(f"crash schedule seed: {seed} (VAI_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    dsn = asyncpg_dsn(sa.make_url(db_url))
    await create_effect_tables(dsn)
    env = worker_env(
        db_url, tmp_path / "var", lease_s=LEASE_S, poll_interval_s=POLL_S, per_org_concurrency=RUNS, drain_timeout_s=1
    )
    started: list[WorkerProcess] = []

    async def start_worker() -> WorkerProcess:
        worker = await WorkerProcess.start(f"worker-{len(started) + 1}", env, tmp_path, concurrency=CONCURRENCY)
        started.append(worker)
        return worker

    try:
        live = [await start_worker() for _ in range(WORKERS)]
        await asyncio.gather(*(w.wait_ready() for w in live))
        replacements: set[asyncio.Task[str]] = set()
        orphans: list[Orphan] = []

        async def kill_one() -> None:
            # A worker holding a run that lingers after its committed effect (so its next attempt must meet that
            # effect as a duplicate), the one holding the most runs among those, a random one among equals: a
            # worker picked blindly may just have started, or be between batches, and a kill that orphans nothing
            # tests nothing.
            async def holding_a_lingerer() -> list[WorkerProcess]:
                # Live workers only: a killed worker's runs stay RUNNING under its name until their leases expire.
                after_effect = await lingering(harness)
                return [w for w in live if after_effect[w.name]]

            candidates = await eventually(holding_a_lingerer, timeout=30, what="a run lingering after its effect")
            holding = await running_by_worker(harness)
            most = max(holding[w.name] for w in candidates)
            victim = rng.choice([w for w in candidates if holding[w.name] == most])
            victim.kill()
            await victim.process.wait()
            killed_at = datetime.fromtimestamp(victim.killed_at or 0, UTC)
            async with harness.sessions() as session:
                rows = (
                    await session.execute(
                        sa.select(ActionRun.id, ActionRun.attempt, ActionRun.lease_expires_at).where(
                            ActionRun.status == RunStatus.RUNNING, ActionRun.lease_owner == victim.name
                        )
                    )
                ).all()
                await session.rollback()
            orphans.extend(Orphan(run_id, attempt, expires, killed_at) for run_id, attempt, expires in rows)
            live.remove(victim)
            replacement = await start_worker()
            live.append(replacement)
            replacements.add(asyncio.create_task(replacement.wait_ready()))

        run_ids: list[str] = []
        kills_done = 0

        async def killer() -> None:
            nonlocal kills_done
            for progress in sorted(rng.uniform(0.1, 0.9) for _ in range(KILLS)):
                wanted = progress * RUNS
                await eventually(
                    lambda wanted=wanted: len(run_ids) >= wanted, timeout=120, interval=0.01, what="the runs to kill at"
                )
                # One worker down at a time: the others must have room for the orphans when they come back.
                await asyncio.gather(*replacements)
                await kill_one()
                kills_done += 1

        async def producer() -> None:
            # At least RUNS, and on until the last kill: a kill that comes after the work has run out (a
            # replacement worker can take seconds to start) would orphan nothing.
            while len(run_ids) < RUNS or kills_done < KILLS:
                if await pending_count(harness) >= MAX_WAITING:
                    await asyncio.sleep(0.02)
                    continue
                async with harness.sessions() as session:
                    service = ActionRunService(session, harness.tenant, harness.registry)
                    for i in range(BATCH):
                        inputs = {"work_s": round(rng.uniform(0.02, 0.2), 3)}
                        if i == 0:
                            inputs["linger_first_attempt_s"] = LINGER_S
                        created = await service.create(kind="test_effect", inputs=inputs, commit=False)
                        run_ids.append(created.run.id)
                    await session.commit()

        await asyncio.gather(producer(), killer())
        await asyncio.gather(*replacements)
        statuses = await eventually(
            lambda: all_finished(harness, len(run_ids)),
            timeout=LEASE_S * 3 + 30,
            interval=0.2,
            what="every run to finish",
        )
        assert statuses == {RunStatus.COMPLETED: len(run_ids)}

        await check_effects(dsn, run_ids, orphans)
        await check_runs_and_events(harness, run_ids)
        recoveries = await recoveries_of(harness, orphans)
        print(
            f"{len(orphans)} of {len(run_ids)} runs orphaned by {KILLS} kills; next start after the lease expired: "
            f"median {statistics.median(r.since_expiry(r.restarted_at) for r in recoveries):.2f}s, "
            f"max {max(r.since_expiry(r.restarted_at) for r in recoveries):.2f}s; after the kill: "
            f"max {max(r.since_kill for r in recoveries):.2f}s (lease {LEASE_S}s)"
        )
        for recovery in recoveries:
            # The watchdog runs every third of the lease; the claim follows after the backoff and a poll at most.
            assert recovery.since_expiry(recovery.requeued_at) <= LEASE_S / 3 + SLACK_S, recovery
            assert recovery.since_expiry(recovery.restarted_at) <= LEASE_S + POLL_S, recovery
            assert recovery.since_kill <= LEASE_S + LEASE_S / 3 + BACKOFF_MAX_S + POLL_S + SLACK_S, recovery
    finally:
        for worker in started:
            await worker.ensure_dead()


async def pending_count(harness: Harness) -> int:
    async with harness.sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).select_from(ActionRun).where(ActionRun.status == RunStatus.PENDING)
        )
        await session.rollback()
    return int(count or 0)


async def all_finished(harness: Harness, runs: int) -> Counter[RunStatus] | None:
    async with harness.sessions() as session:
        rows = (await session.execute(sa.select(ActionRun.status, sa.func.count()).group_by(ActionRun.status))).all()
        await session.rollback()
    counts = Counter({status: n for status, n in rows})
    broken = {s: n for s, n in counts.items() if s in (RunStatus.FAILED, RunStatus.CANCELLED)}
    assert not broken, f"runs ended badly: {broken}"
    return counts if counts[RunStatus.COMPLETED] == runs else None


# The external system's log of executions (tests/runtime/kinds_effects.py), beside our tables in the test database.
effect_attempts = sa.table("test_effect_attempts", sa.column("run_id"), sa.column("attempt"), sa.column("outcome"))


async def running_by_worker(harness: Harness) -> Counter[str]:
    async with harness.sessions() as session:
        owners = (
            await session.scalars(sa.select(ActionRun.lease_owner).where(ActionRun.status == RunStatus.RUNNING))
        ).all()
        await session.rollback()
    return Counter(owner for owner in owners if owner)


async def lingering(harness: Harness) -> Counter[str]:
    """Per worker, its RUNNING runs whose current attempt has already committed its effect."""
    async with harness.sessions() as session:
        rows = (
            await session.execute(
                sa.select(ActionRun.lease_owner, sa.func.count())
                .join(
                    effect_attempts,
                    sa.and_(
                        effect_attempts.c.run_id == ActionRun.id,
                        effect_attempts.c.attempt == ActionRun.attempt,
                        effect_attempts.c.outcome == "applied",
                    ),
                )
                .where(ActionRun.status == RunStatus.RUNNING)
                .group_by(ActionRun.lease_owner)
            )
        ).all()
        await session.rollback()
    return Counter({owner: n for owner, n in rows if owner})


async def check_effects(dsn: str, run_ids: list[str], orphans: list[Orphan]) -> None:
    effects, attempts = await read_effects(dsn)
    # Each run's effect is committed once, under the run's own idempotency key …
    assert sorted(e.run_id for e in effects) == sorted(run_ids)
    assert all(e.idempotency_key == e.run_id for e in effects)
    applied = Counter(a.run_id for a in attempts if a.outcome == "applied")
    assert set(applied.values()) == {1} and len(applied) == len(run_ids)
    # … although executions repeated, some of them after the effect was already committed.
    executions = Counter(a.run_id for a in attempts if a.outcome == "started")
    assert sum(executions.values()) > len(run_ids)
    # A run orphaned after its effect was committed met that effect as a duplicate when it ran again; every kill
    # chose a worker holding such a run, so there is at least one. (An orphan may not run again: a kill that lands
    # as its outcome's COMMIT reaches the server still lets that commit through.)
    applied_at = {(a.run_id, a.attempt) for a in attempts if a.outcome == "applied"}
    started_at = {(a.run_id, a.attempt) for a in attempts if a.outcome == "started"}
    duplicates = {(a.run_id, a.attempt) for a in attempts if a.outcome == "duplicate"}

    def later(run_attempts: set[tuple[str, int]], orphan: Orphan) -> bool:
        return any(run_id == orphan.run_id and attempt > orphan.attempt for run_id, attempt in run_attempts)

    ran_again_after_effect = [o for o in orphans if (o.run_id, o.attempt) in applied_at and later(started_at, o)]
    assert ran_again_after_effect
    for orphan in ran_again_after_effect:
        assert later(duplicates, orphan), orphan


async def check_runs_and_events(harness: Harness, run_ids: list[str]) -> None:
    async with harness.sessions() as session:
        runs = (await session.execute(sa.select(ActionRun.id, ActionRun.attempt, ActionRun.output))).all()
        terminal_events = (
            await session.execute(
                sa.select(ActionRunEvent.run_id, sa.func.count())
                .where(ActionRunEvent.kind == "status", ActionRunEvent.data["to"].as_string() == "COMPLETED")
                .group_by(ActionRunEvent.run_id)
            )
        ).all()
        await session.rollback()
    assert len(runs) == len(run_ids)
    # The output recorded is the last attempt's: no earlier attempt's late write got through.
    stale = [(run_id, attempt, output) for run_id, attempt, output in runs if output["attempt"] != attempt]
    assert not stale
    assert dict(terminal_events) == dict.fromkeys(run_ids, 1)


async def recoveries_of(harness: Harness, orphans: list[Orphan]) -> list[Recovery]:
    """Match each orphan with the watchdog's re-queue of its attempt and the claim of the next attempt."""
    async with harness.sessions() as session:
        events = (
            await session.scalars(
                sa.select(ActionRunEvent)
                .where(ActionRunEvent.run_id.in_({o.run_id for o in orphans}), ActionRunEvent.kind == "status")
                .order_by(ActionRunEvent.run_id, ActionRunEvent.seq)
            )
        ).all()
        await session.commit()  # ends the read; unlike a rollback, keeps the objects loaded
    recoveries = []
    for orphan in orphans:
        mine = [e for e in events if e.run_id == orphan.run_id]
        requeued = [e for e in mine if e.data.get("reason") == "lease_expired" and e.data["attempt"] == orphan.attempt]
        if not requeued:
            # The kill landed while its outcome was being committed: the commit went through, nothing to recover.
            assert any(e.data["to"] == "COMPLETED" and e.data["attempt"] == orphan.attempt for e in mine), mine
            continue
        [restart] = [e for e in mine if e.data["to"] == "RUNNING" and e.data["attempt"] == orphan.attempt + 1]
        recoveries.append(Recovery(orphan, requeued[0].created_at, restart.created_at))
    assert recoveries, "no kill caught a run in flight: the test proved nothing"
    return recoveries
