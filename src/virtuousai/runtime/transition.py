"""The one function that moves an ActionRun between states, and the one that appends its events.

``transition`` checks ``ALLOWED``, runs an UPDATE guarded by the expected status (and, for worker writes, the
fencing ``lease_token``) and appends the event row, all in the caller's transaction. Zero rows updated means the
run is no longer what the caller thought (another worker owns it, the watchdog re-queued it, an admin cancelled
it): ``LeaseLost``, and the caller stops touching that run. The claim (PENDING → RUNNING, many rows at once) is the
one move made in the drivers' SQL; it appends its events through ``append_claim_events`` below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.tables import ActionRun, ActionRunEvent
from virtuousai.ids import new_id
from virtuousai.runtime.states import TERMINAL, RunStatus, check_transition
from virtuousai.store.drivers import ClaimedRun, Wakeup, driver_for_session
from virtuousai.timeutil import utcnow

STATUS_EVENT = "status"


class LeaseLost(Exception):
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
    stmt = (
        sa.update(ActionRun)
        .where(ActionRun.id == run.id, ActionRun.tenant_id == run.tenant_id, ActionRun.status == run.status, *where)
        .values(changes)
        .returning(ActionRun.last_event_seq)
        .execution_options(synchronize_session=False)
    )
    if token is not None:
        stmt = stmt.where(ActionRun.lease_token == token)
    seq = (await session.execute(stmt)).scalar_one_or_none()
    if seq is None:
        raise LeaseLost(f"run {run.id} is no longer {run.status.value}" + (f" under token {token}" if token else ""))
    data = {"from": run.status.value, "to": to.value, **(event or {})}
    session.add(_event(run.tenant_id, run.id, seq, STATUS_EVENT, data, now))
    await session.flush()
    driver = driver_for_session(session)
    if to is RunStatus.PENDING:
        await driver.publish(session, Wakeup("enqueued", run.id))
    elif to in TERMINAL:
        await driver.publish(session, Wakeup("finished", run.id))
    return int(seq)


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


def append_claim_events(session: AsyncSession, owner: str, claimed: Sequence[ClaimedRun], now: datetime) -> None:
    """The PENDING → RUNNING events of one claim (their numbers were handed out by the claim statement)."""
    for run in claimed:
        data = {"from": RunStatus.PENDING.value, "to": RunStatus.RUNNING.value, "attempt": run.attempt}
        data["worker"] = owner
        session.add(_event(run.tenant_id, run.id, run.event_seq, STATUS_EVENT, data, now))


def _event(tenant_id: str, run_id: str, seq: int, kind: str, data: dict[str, Any], now: datetime) -> ActionRunEvent:
    return ActionRunEvent(
        id=new_id("evt"), tenant_id=tenant_id, run_id=run_id, seq=seq, kind=kind, data=data, created_at=now
    )
