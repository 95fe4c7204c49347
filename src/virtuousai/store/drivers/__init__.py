"""Run-queue drivers: the few operations whose SQL differs between PostgreSQL and SQLite.

Everything portable (lease renewal, guarded transitions, the watchdog's scan) is written once with SQLAlchemy Core
in ``virtuousai.runtime``; a driver holds only

- ``claim_runs``: take up to N claimable runs and append their RUNNING events (PostgreSQL: one statement, a CTE with
  ``FOR UPDATE SKIP LOCKED`` whose events are inserted by a data-modifying CTE; SQLite: a guarded
  ``UPDATE … WHERE id IN (SELECT … LIMIT) RETURNING``, which has one writer at a time anyway, then the events);
- ``finish_runs_if_owned``: record several runs' outcomes, each row guarded by its own lease token, with their
  status events and wake-ups (PostgreSQL: one ``UPDATE … FROM unnest(…)`` statement that also inserts the events
  and sends the NOTIFYs; SQLite: one guarded UPDATE per run, where a statement costs no round trip);
- ``batch_session``: where those two run — PostgreSQL runs each as one statement, atomic on its own, so it needs no
  BEGIN and COMMIT around it (two round trips fewer per batch); SQLite runs them in a transaction;
- ``insert_ignoring_conflicts``: insert rows, skipping those a unique key already holds, and say which went in
  (``INSERT … ON CONFLICT DO NOTHING RETURNING``, a different construct in each dialect);
- ``write_together``: several writes in one round trip (PostgreSQL: one statement of data-modifying CTEs, its
  NOTIFYs included; SQLite: one by one, where a statement costs no round trip) — a pass writes all it changed so;
- ``publish``: send wake-ups when the caller's transaction commits: to this process's subscribers at once, and to
  other processes (``NOTIFY``; nothing more on SQLite, whose other processes poll);
- ``listen``: feed this process's ``WakeupHub`` from other processes (``LISTEN``; nothing to do on SQLite).

The SQL names the ``action_runs`` and ``action_run_events`` columns the runtime relies on; the tables are declared in
``virtuousai/runtime/tables.py``. The callers decide every value (the states, from the one transition table; the
event data; the event ids): the SQL carries only the guards.

Round trips are the cost of a queue (a no-op run is two writes of one row), so the hot statements take a whole batch
in parallel arrays — one parameter per column, however many runs, so one prepared statement serves every size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
    event_seq: int  # the number of its RUNNING event
    parent_run_id: str | None  # told in the ``finished`` wake-up


# The columns every claim returns, typed so both dialects hand back the same Python values.
CLAIM_RETURNING = """id, tenant_id, kind, inputs, inputs_hash, attempt, max_attempts, timeout_s, priority, lease_token,
    lease_expires_at, cancel_requested_at, requires_approval, approved_inputs_hash, last_event_seq, parent_run_id"""
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
    "parent_run_id": sa.String,
}
CLAIM_PARAM_TYPES = (
    sa.bindparam("now", type_=UTCDateTime()),
    sa.bindparam("lease_until", type_=UTCDateTime()),
)


# claim_runs' choice of runs, the same in both dialects but for the lock PostgreSQL takes on its candidates
# (``lock``): organizations at their limit are skipped while scanning (so their backlog cannot hide other
# organizations' runs); within the batch, row_number() keeps each organization under the limit. Each dialect
# follows it with its own UPDATE (``chosen`` names the runs to claim).
CLAIM_CHOICE_SQL = """
WITH running AS (
    SELECT tenant_id, count(*) AS n FROM action_runs WHERE status = 'RUNNING' GROUP BY tenant_id
), candidates AS (
    SELECT id, tenant_id, priority, available_at FROM action_runs
    WHERE status = 'PENDING' AND available_at <= :now
      AND tenant_id NOT IN (SELECT tenant_id FROM running WHERE n >= :org_limit)
    ORDER BY priority DESC, available_at, id
    LIMIT :scan_limit{lock}
), chosen AS (
    SELECT ranked.id FROM (
        SELECT c.id, c.priority, c.available_at,
               row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.priority DESC, c.available_at, c.id)
                   + coalesce(r.n, 0) AS slot
        FROM candidates c LEFT JOIN running r ON r.tenant_id = c.tenant_id
    ) ranked
    WHERE ranked.slot <= :org_limit
    ORDER BY ranked.priority DESC, ranked.available_at, ranked.id
    LIMIT :batch
)"""


def claim_choice_sql(lock: str = "") -> str:
    return CLAIM_CHOICE_SQL.replace("{lock}", lock)


def claim_params(*, owner: str, limit: int, org_limit: int, now: datetime, lease_until: datetime) -> dict[str, Any]:
    """The parameters both dialects' ``CLAIM_SQL`` take."""
    return {
        "owner": owner,
        "batch": limit,
        # Lock a few more rows than we take, so the per-organization filter still fills the batch.
        "scan_limit": limit * 4,
        "org_limit": org_limit,
        "now": now,
        "lease_until": lease_until,
    }


def in_claim_order(rows: Sequence[sa.Row[Any]]) -> list[ClaimedRun]:
    """Claimed rows as runs, highest priority first, then oldest."""
    return sorted((claimed_from_row(r) for r in rows), key=lambda run: (-run.priority, run.id))


def claimed_from_row(row: sa.Row[Any]) -> ClaimedRun:
    return claimed_from_mapping(row._mapping)


def claimed_from_mapping(m: Mapping[Any, Any]) -> ClaimedRun:
    """A ``ClaimedRun`` from ``action_runs`` columns (a claim's RETURNING row)."""
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
        cancel_requested_at=m.get("cancel_requested_at"),
        requires_approval=bool(m["requires_approval"]),
        approved_inputs_hash=m.get("approved_inputs_hash"),
        event_seq=m["last_event_seq"],
        parent_run_id=m.get("parent_run_id"),
    )


@dataclass(frozen=True)
class RunFinish:
    """One worker outcome to record: the run leaves RUNNING for ``status`` if ``lease_token`` still holds, with its
    status event and wake-up. The values are decided (and the move checked against the state table) by
    ``virtuousai.runtime.transition.finish_runs``."""

    run_id: str
    tenant_id: str
    lease_token: int
    status: str
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    available_at: datetime | None  # PENDING again: claimable from then (None: unchanged)
    finished_at: datetime | None  # terminal: when
    attempt_delta: int  # -1 gives the attempt back (a run released on shutdown), else 0
    event_id: str
    event_data: dict[str, Any]
    wakeup: Wakeup  # published at commit if the run moved


@dataclass(frozen=True)
class ClaimEvents:
    """The status events a claim appends: ``data`` plus each run's ``attempt``, with ids taken in order."""

    event_ids: Sequence[str]  # at least as many as the claim's limit
    data: dict[str, Any]


@dataclass(frozen=True)
class Rows:
    """Many rows written by one statement: inserted into ``table``, or — with ``key`` — the rows that ``key``'s
    columns find updated to the other columns' values, only where the ``guard`` columns still hold the given values
    (what the writer read). Every row has the same columns."""

    table: sa.Table
    rows: Sequence[Mapping[str, Any]]
    key: tuple[str, ...] = ()
    guard: Mapping[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.rows[0]) if self.rows else ()


class RunQueueDriver(Protocol):
    dialect: str

    def batch_session(self, sessions: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for one ``claim_runs`` or ``finish_runs_if_owned`` call: its work is committed when the block
        ends without an error and discarded otherwise."""
        ...

    async def claim_runs(
        self,
        session: AsyncSession,
        *,
        owner: str,
        limit: int,
        org_limit: int,
        now: datetime,
        lease_until: datetime,
        events: ClaimEvents,
    ) -> list[ClaimedRun]:
        """Move up to ``limit`` claimable runs to RUNNING for ``owner``, highest priority first, never letting an
        organization exceed ``org_limit`` running runs, and append their status events. Runs in the caller's
        transaction."""
        ...

    async def finish_runs_if_owned(
        self, session: AsyncSession, finishes: Sequence[RunFinish], *, now: datetime
    ) -> set[str]:
        """Move each run that is still RUNNING under its ``lease_token``, append its status event (numbered by the
        run's counter) and publish its wake-up at commit; return the ids that moved. The others change nothing
        (their lease was lost). Runs in the caller's transaction."""
        ...

    async def insert_ignoring_conflicts(
        self, session: AsyncSession, table: Any, rows: Sequence[Mapping[str, Any]], *, conflict: Sequence[str]
    ) -> set[str]:
        """Insert ``rows`` (each with every column) in the caller's transaction, skipping a row whose ``conflict``
        columns a row already holds; returns the ``id`` of every row inserted."""
        ...

    async def write_together(
        self, session: AsyncSession, writes: Sequence[Rows], wakeups: Sequence[Wakeup] = ()
    ) -> list[int]:
        """Write ``writes`` in the caller's transaction, in order, and publish ``wakeups`` at its commit; returns
        how many rows each write inserted or updated (a guarded update that found its row moved: 0). The writes of
        one call must not depend on each other's rows (on PostgreSQL they are one statement: one snapshot)."""
        ...

    async def publish(self, session: AsyncSession, *wakeups: Wakeup) -> None:
        """Deliver ``wakeups`` when the session's transaction commits (dropped if it rolls back): to this process's
        subscribers as the commit returns, and to other processes' (PostgreSQL: ``NOTIFY``)."""
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


__all__ = [
    "ClaimEvents",
    "ClaimedRun",
    "Rows",
    "RunFinish",
    "RunQueueDriver",
    "Wakeup",
    "WakeupHub",
    "driver_for",
    "driver_for_session",
    "hub_for",
]
