"""Run-queue drivers: the few operations whose SQL differs between PostgreSQL and SQLite.

Everything portable (lease renewal, guarded transitions, the watchdog's scan) is written once with SQLAlchemy Core
in ``virtuousai.runtime``; a driver holds only

- ``claim_runs``: take up to N claimable runs in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a guarded
  ``UPDATE … WHERE id IN (SELECT … LIMIT) RETURNING`` on SQLite, which has one writer at a time anyway);
- ``publish``: send a wake-up when the caller's transaction commits (``NOTIFY`` / an in-process signal);
- ``listen``: feed this process's ``WakeupHub`` from other processes (``LISTEN``; nothing to do on SQLite).

The SQL names the ``action_runs`` columns the runtime relies on; the table itself is declared in
``virtuousai/actions/tables.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from virtuousai.store.base import JSONDoc, UTCDateTime
from virtuousai.store.drivers.wakeups import Wakeup, WakeupHub, hub_for


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker learns about a run it just claimed (the run is RUNNING under ``lease_token``)."""

    id: str
    tenant_id: str
    kind: str
    inputs: dict[str, Any]
    inputs_hash: str
    attempt: int
    max_attempts: int
    timeout_s: float
    priority: int
    lease_token: int
    lease_expires_at: datetime
    cancel_requested_at: datetime | None
    requires_approval: bool
    approved_inputs_hash: str | None
    event_seq: int  # the number of the RUNNING event the claimer appends


# The columns every claim returns, typed so both dialects hand back the same Python values.
CLAIM_RETURNING = """id, tenant_id, kind, inputs, inputs_hash, attempt, max_attempts, timeout_s, priority, lease_token,
    lease_expires_at, cancel_requested_at, requires_approval, approved_inputs_hash, last_event_seq"""
CLAIM_RESULT_TYPES: dict[str, Any] = {
    "id": sa.String,
    "tenant_id": sa.String,
    "kind": sa.String,
    "inputs": JSONDoc,
    "inputs_hash": sa.String,
    "attempt": sa.Integer,
    "max_attempts": sa.Integer,
    "timeout_s": sa.Float,
    "priority": sa.Integer,
    "lease_token": sa.BigInteger,
    "lease_expires_at": UTCDateTime(),
    "cancel_requested_at": UTCDateTime(),
    "requires_approval": sa.Boolean,
    "approved_inputs_hash": sa.String,
    "last_event_seq": sa.Integer,
}
CLAIM_PARAM_TYPES = (
    sa.bindparam("now", type_=UTCDateTime()),
    sa.bindparam("lease_until", type_=UTCDateTime()),
)


def claimed_from_row(row: sa.Row[Any]) -> ClaimedRun:
    m = row._mapping
    return ClaimedRun(
        id=m["id"],
        tenant_id=m["tenant_id"],
        kind=m["kind"],
        inputs=dict(m["inputs"]),
        inputs_hash=m["inputs_hash"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        timeout_s=m["timeout_s"],
        priority=m["priority"],
        lease_token=m["lease_token"],
        lease_expires_at=m["lease_expires_at"],
        cancel_requested_at=m["cancel_requested_at"],
        requires_approval=bool(m["requires_approval"]),
        approved_inputs_hash=m["approved_inputs_hash"],
        event_seq=m["last_event_seq"],
    )


class RunQueueDriver(Protocol):
    dialect: str

    async def claim_runs(
        self,
        session: AsyncSession,
        *,
        owner: str,
        limit: int,
        org_limit: int,
        now: datetime,
        lease_until: datetime,
    ) -> list[ClaimedRun]:
        """Move up to ``limit`` claimable runs to RUNNING for ``owner``, highest priority first, never letting an
        organization exceed ``org_limit`` running runs. Runs in the caller's transaction."""
        ...

    async def publish(self, session: AsyncSession, wakeup: Wakeup) -> None:
        """Deliver ``wakeup`` when the session's transaction commits (dropped if it rolls back)."""
        ...

    async def listen(self, hub: WakeupHub) -> None:
        """Feed ``hub`` with wake-ups from other processes until cancelled (reconnecting as needed)."""
        ...


def driver_for(engine: AsyncEngine) -> RunQueueDriver:
    if engine.dialect.name == "postgresql":
        from virtuousai.store.drivers.postgres import PostgresRunQueue

        return PostgresRunQueue(engine.url)
    if engine.dialect.name == "sqlite":
        from virtuousai.store.drivers.sqlite import SqliteRunQueue

        return SqliteRunQueue(engine.url)
    raise NotImplementedError(f"no run-queue driver for {engine.dialect.name}")


def driver_for_session(session: AsyncSession) -> RunQueueDriver:
    bind = session.bind
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the session must be bound to an AsyncEngine")
    return driver_for(bind)


__all__ = ["ClaimedRun", "RunQueueDriver", "Wakeup", "WakeupHub", "driver_for", "driver_for_session", "hub_for"]
