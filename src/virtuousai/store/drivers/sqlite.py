"""SQLite: claim with a guarded ``UPDATE … WHERE id IN (SELECT … LIMIT) RETURNING``; wake-ups in process.

SQLite has one writer at a time (our sessions begin ``IMMEDIATE``), so the claim needs no row locks and the
per-organization limit is exact. Wake-ups reach only this process; other processes find work by polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.store.base import JSONDoc, UTCDateTime
from virtuousai.store.drivers import (
    CLAIM_PARAM_TYPES,
    CLAIM_RESULT_TYPES,
    CLAIM_RETURNING,
    ClaimedRun,
    ClaimEvents,
    Rows,
    RunFinish,
    claim_choice_sql,
    claim_params,
    in_claim_order,
)
from virtuousai.store.drivers.wakeups import Wakeup, WakeupHub, hub_for, publish_at_commit
from virtuousai.store.engine import transaction

CLAIM_SQL = (
    sa.text(
        f"""
{claim_choice_sql()}
UPDATE action_runs SET
    status = 'RUNNING',
    attempt = attempt + 1,
    lease_token = lease_token + 1,
    lease_owner = :owner,
    lease_expires_at = :lease_until,
    started_at = :now,
    updated_at = :now,
    last_event_seq = last_event_seq + 1
WHERE id IN (SELECT id FROM chosen) AND status = 'PENDING'
RETURNING {CLAIM_RETURNING}
"""
    )
    .bindparams(*CLAIM_PARAM_TYPES)
    .columns(**CLAIM_RESULT_TYPES)
)


# finish_runs_if_owned, one run at a time: SQLite runs in process, so a statement costs no round trip, and the
# transaction (one commit for the whole group) is what batching saves.
FINISH_SQL = sa.text(
    """
UPDATE action_runs SET
    status = :status,
    output = :output,
    error = :error,
    available_at = coalesce(:available_at, available_at),
    finished_at = :finished_at,
    attempt = attempt + :attempt_delta,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now,
    last_event_seq = last_event_seq + 1
WHERE id = :id AND tenant_id = :tenant_id AND lease_token = :token AND status = 'RUNNING'
RETURNING last_event_seq
"""
).bindparams(
    sa.bindparam("now", type_=UTCDateTime()),
    sa.bindparam("available_at", type_=UTCDateTime()),
    sa.bindparam("finished_at", type_=UTCDateTime()),
    sa.bindparam("output", type_=JSONDoc),
    sa.bindparam("error", type_=JSONDoc),
)

EVENT_SQL = sa.text(
    """
INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
VALUES (:id, :tenant_id, :run_id, :seq, 'status', :data, :created_at)
"""
).bindparams(sa.bindparam("data", type_=JSONDoc), sa.bindparam("created_at", type_=UTCDateTime()))


class SqliteRunQueue:
    dialect = "sqlite"

    def __init__(self, url: sa.URL) -> None:
        self.url = url

    def batch_session(self, sessions: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[AsyncSession]:
        return transaction(sessions)  # an UPDATE and an INSERT: they commit together

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
        params = claim_params(owner=owner, limit=limit, org_limit=org_limit, now=now, lease_until=lease_until)
        rows = (await session.execute(CLAIM_SQL, params)).all()
        claimed = in_claim_order(rows)
        # The same numbering as PostgreSQL's: event ids in the order of the run ids.
        event_rows = [
            {
                "id": event_id,
                "tenant_id": run.tenant_id,
                "run_id": run.id,
                "seq": run.event_seq,
                "data": events.data | {"attempt": run.attempt},
                "created_at": now,
            }
            for event_id, run in zip(events.event_ids, sorted(claimed, key=lambda run: run.id), strict=False)
        ]
        if event_rows:
            await session.execute(EVENT_SQL, event_rows)
        return claimed

    async def finish_runs_if_owned(
        self, session: AsyncSession, finishes: Sequence[RunFinish], *, now: datetime
    ) -> set[str]:
        moved: list[RunFinish] = []
        event_rows: list[dict[str, Any]] = []
        for f in finishes:
            params: dict[str, Any] = {
                "now": now,
                "id": f.run_id,
                "tenant_id": f.tenant_id,
                "token": f.lease_token,
                "status": f.status,
                "output": f.output,
                "error": f.error,
                "available_at": f.available_at,
                "finished_at": f.finished_at,
                "attempt_delta": f.attempt_delta,
            }
            seq = (await session.execute(FINISH_SQL, params)).scalar_one_or_none()
            if seq is None:
                continue  # the guard failed: the lease was lost
            moved.append(f)
            event_rows.append(
                {
                    "id": f.event_id,
                    "tenant_id": f.tenant_id,
                    "run_id": f.run_id,
                    "seq": seq,
                    "data": f.event_data,
                    "created_at": now,
                }
            )
        if event_rows:
            await session.execute(EVENT_SQL, event_rows)
            await self.publish(session, *(f.wakeup for f in moved))
        return {f.run_id for f in moved}

    async def insert_ignoring_conflicts(
        self, session: AsyncSession, table: Any, rows: Sequence[Mapping[str, Any]], *, conflict: Sequence[str]
    ) -> set[str]:
        if not rows:
            return set()
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict)).returning(table.c.id)
        return set((await session.execute(stmt, list(rows))).scalars().all())

    async def write_together(
        self, session: AsyncSession, writes: Sequence[Rows], wakeups: Sequence[Wakeup] = ()
    ) -> list[int]:
        # One executemany per write: in process, a statement costs no round trip.
        counts: list[int] = []
        for write in writes:
            if not write.rows:
                counts.append(0)
                continue
            table = write.table
            if not write.key:
                await session.execute(sa.insert(table), list(write.rows))
                counts.append(len(write.rows))
                continue
            where = [table.c[name] == sa.bindparam(f"k_{name}") for name in write.key]
            where += [table.c[name] == value for name, value in write.guard.items()]
            values: dict[str, Any] = {
                name: sa.bindparam(f"v_{name}") for name in write.columns if name not in write.key
            }
            params = [
                {(f"k_{name}" if name in write.key else f"v_{name}"): value for name, value in row.items()}
                for row in write.rows
            ]
            result = await session.execute(sa.update(table).where(*where).values(values), params)
            counts.append(int(result.rowcount))  # type: ignore[attr-defined]
        await self.publish(session, *wakeups)
        return counts

    async def publish(self, session: AsyncSession, *wakeups: Wakeup) -> None:
        # At commit, to this process only: no other process hears them (they poll).
        if wakeups:
            publish_at_commit(session, hub_for(self.url), wakeups)

    async def listen(self, hub: WakeupHub) -> None:
        # In-process publishers already reach the hub; there is no other process to hear from.
        await asyncio.Event().wait()
