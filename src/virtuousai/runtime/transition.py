"""The functions that move ActionRuns between states, and the one that appends their events.

``transition`` checks ``ALLOWED``, runs an UPDATE guarded by the expected status (and, for worker writes, the
fencing ``lease_token``) and appends the event row, all in the caller's transaction. Zero rows updated means the
run is no longer what the caller thought (another worker owns it, the watchdog re-queued it, an admin cancelled
it): ``LeaseLost``, and the caller stops touching that run.

Two moves touch many runs in one statement, for throughput, and are written in the drivers' SQL: the claim
(PENDING → RUNNING, with ``claim_events``) and ``finish_runs`` (a worker's outcomes, RUNNING → anything, each row
fenced by its own token). Both check the same ``ALLOWED`` table here, and decide the event data and wake-ups here,
before the SQL runs; the SQL carries only the guards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.ids import new_id
from virtuousai.runtime.machine import Stale, guarded_update
from virtuousai.runtime.states import TERMINAL, RunStatus, check_transition
from virtuousai.runtime.tables import STATUS_EVENT, ActionRun, ActionRunEvent
from virtuousai.store.drivers import ClaimedRun, ClaimEvents, Rows, RunFinish, Wakeup, driver_for_session
from virtuousai.timeutil import utcnow


class LeaseLost(Stale):
    """The guarded write changed nothing: the run moved on without us. Stop working on it; write nothing more."""


class RunRef(Protocol):
    """Enough of a run to guard a write: an ``ActionRun`` row or a ``RunHandle``."""

    @property
    def id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def status(self) -> RunStatus: ...


@dataclass(frozen=True)
class RunHandle:
    id: str
    tenant_id: str
    status: RunStatus


async def transition(
    session: AsyncSession,
    run: RunRef,
    to: RunStatus,
    *,
    token: int | None = None,
    values: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    where: Sequence[sa.ColumnElement[bool]] = (),
    now: datetime | None = None,
) -> int:
    """Move ``run`` from its current ``status`` to ``to``; returns the event's ``seq``. The caller commits.

    ``token`` fences a worker's write; ``where`` adds guards of the caller's own (the watchdog: lease still expired).
    """
    check_transition(run.status, to)
    now = now or utcnow()
    changes: dict[str, Any] = {
        "status": to,
        "updated_at": now,
        "last_event_seq": ActionRun.last_event_seq + 1,
    }
    if run.status is RunStatus.RUNNING:
        # Leaving RUNNING ends the lease; the token stays, so the next claim's token is still larger.
        changes |= {"lease_owner": None, "lease_expires_at": None}
    if to in TERMINAL:
        changes["finished_at"] = now
    changes |= dict(values or {})
    guards: dict[str, Any] = {"status": run.status}
    if token is not None:
        guards["lease_token"] = token
    row = await guarded_update(
        session,
        ActionRun,
        key={"id": run.id, "tenant_id": run.tenant_id},
        guards=guards,
        values=changes,
        where=where,
        returning=(ActionRun.last_event_seq, ActionRun.parent_run_id),
        stale=LeaseLost,
    )
    seq, parent_run_id = int(row[0]), row[1]
    data = {"from": run.status.value, "to": to.value, **(event or {})}
    session.add(_event(run.tenant_id, run.id, seq, STATUS_EVENT, data, now))
    await session.flush()
    wakeup = wakeup_after(to, run.id, run.tenant_id, parent_run_id)
    if wakeup is not None:
        await driver_for_session(session).publish(session, wakeup)
    return int(seq)


@dataclass(frozen=True)
class Finish:
    """A worker's outcome for one run it holds: the move out of RUNNING, fenced by the claim's ``token``."""

    run: ClaimedRun
    to: RunStatus
    event: Mapping[str, Any]  # added to the status event's ``{from, to}``
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    available_at: datetime | None = None  # back to PENDING: claimable from then
    give_back_attempt: bool = False  # released on shutdown: not the run's fault
    event_seq: int | None = None  # the run's latest event as its worker knows it (``finish_as_rows``' guard)


def _run_finish(f: Finish, now: datetime) -> RunFinish:
    check_transition(RunStatus.RUNNING, f.to)
    wakeup = wakeup_after(f.to, f.run.id, f.run.tenant_id, f.run.parent_run_id)
    if wakeup is None:  # every move out of RUNNING wakes someone; the table would have to change first
        raise ValueError(f"no wake-up for RUNNING → {f.to.value}")
    return RunFinish(
        run_id=f.run.id,
        tenant_id=f.run.tenant_id,
        lease_token=f.run.lease_token,
        status=f.to.value,
        output=f.output,
        error=f.error,
        available_at=f.available_at,
        finished_at=now if f.to in TERMINAL else None,
        attempt_delta=-1 if f.give_back_attempt else 0,
        event_id=new_id("evt"),
        event_data={"from": RunStatus.RUNNING.value, "to": f.to.value, **f.event},
        wakeup=wakeup,
    )


async def finish_runs(session: AsyncSession, finishes: Sequence[Finish], *, now: datetime) -> set[str]:
    """Record several workers' outcomes in the caller's transaction (group commit): each run moves only if its own
    token still holds, with its status event and wake-up. Returns the ids that moved; any other run failed its
    guard (its lease was lost) and changed nothing."""
    rows = [_run_finish(f, now) for f in finishes]
    if not rows:
        return set()
    return await driver_for_session(session).finish_runs_if_owned(session, rows, now=now)


def finish_as_rows(f: Finish, *, now: datetime) -> tuple[list[Rows], Wakeup]:
    """One terminal outcome as writes for ``RunQueueDriver.write_together`` (with other writes of the caller's, in
    one statement) and its wake-up: the run's update, guarded by its lease token, its RUNNING status and the
    event counter its worker knows (``f.event_seq``; an event appended by someone else — a cancel request — makes
    the guard fail, and the caller records the outcome the usual way), then its status event."""
    if f.event_seq is None or f.give_back_attempt or f.available_at is not None:
        raise ValueError("finish_as_rows records a terminal outcome whose event counter is known")
    finish = _run_finish(f, now)
    seq = f.event_seq + 1
    run = Rows(
        cast(sa.Table, ActionRun.__table__),
        [
            {
                "tenant_id": finish.tenant_id,
                "id": finish.run_id,
                "status": finish.status,
                "output": finish.output,
                "error": finish.error,
                "finished_at": finish.finished_at,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
                "last_event_seq": seq,
            }
        ],
        key=("tenant_id", "id"),
        guard={"lease_token": finish.lease_token, "status": RunStatus.RUNNING.value, "last_event_seq": f.event_seq},
    )
    event = Rows(
        cast(sa.Table, ActionRunEvent.__table__),
        [
            {
                "id": finish.event_id,
                "tenant_id": finish.tenant_id,
                "run_id": finish.run_id,
                "seq": seq,
                "kind": STATUS_EVENT,
                "data": finish.event_data,
                "created_at": now,
            }
        ],
    )
    return [run, event], finish.wakeup


def claim_events(owner: str, limit: int) -> ClaimEvents:
    """What a claim of up to ``limit`` runs appends: PENDING → RUNNING (the one move of the claim), by ``owner``."""
    check_transition(RunStatus.PENDING, RunStatus.RUNNING)
    data = {"from": RunStatus.PENDING.value, "to": RunStatus.RUNNING.value, "worker": owner}
    return ClaimEvents(event_ids=[new_id("evt") for _ in range(limit)], data=data)


def wakeup_after(to: RunStatus, run_id: str, tenant_id: str, parent_run_id: str | None) -> Wakeup | None:
    """The wake-up a move publishes: PENDING — workers, there is work; terminal — waiters, and the orchestrator of
    the run's parent (``Wakeup.parent_run_id``), which is all the runtime knows of parents."""
    if to is RunStatus.PENDING:
        return Wakeup("enqueued", run_id)
    if to in TERMINAL:
        return Wakeup("finished", run_id, tenant_id, parent_run_id or "")
    return None


async def append_event(
    session: AsyncSession,
    run: RunRef,
    kind: str,
    data: Mapping[str, Any],
    *,
    token: int | None = None,
) -> int:
    """Append a progress (or other non-transition) event; with ``token``, only while that lease still holds."""
    stmt = (
        sa.update(ActionRun)
        .where(ActionRun.id == run.id, ActionRun.tenant_id == run.tenant_id)
        .values(last_event_seq=ActionRun.last_event_seq + 1)
        .returning(ActionRun.last_event_seq)
        .execution_options(synchronize_session=False)
    )
    if token is not None:
        stmt = stmt.where(ActionRun.lease_token == token, ActionRun.status == RunStatus.RUNNING)
    seq = (await session.execute(stmt)).scalar_one_or_none()
    if seq is None:
        raise LeaseLost(f"run {run.id}: lease {token} no longer held")
    session.add(_event(run.tenant_id, run.id, seq, kind, dict(data), utcnow()))
    await session.flush()
    return int(seq)


def _event(tenant_id: str, run_id: str, seq: int, kind: str, data: dict[str, Any], now: datetime) -> ActionRunEvent:
    return ActionRunEvent(
        id=new_id("evt"), tenant_id=tenant_id, run_id=run_id, seq=seq, kind=kind, data=data, created_at=now
    )
