"""SQLite: claim with a guarded ``UPDATE … WHERE id IN (SELECT … LIMIT) RETURNING``; wake-ups in process.

SQLite has one writer at a time (our sessions begin ``IMMEDIATE``), so the claim needs no row locks and the
per-organization limit is exact. Wake-ups reach only this process; other processes find work by polling.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from virtuousai.store.drivers import (
    CLAIM_PARAM_TYPES,
    CLAIM_RESULT_TYPES,
    CLAIM_RETURNING,
    ClaimedRun,
    claimed_from_row,
)
from virtuousai.store.drivers.wakeups import Wakeup, WakeupHub, hub_for

CLAIM_SQL = (
    sa.text(
        f"""
WITH running AS (
    SELECT tenant_id, count(*) AS n FROM action_runs WHERE status = 'RUNNING' GROUP BY tenant_id
), candidates AS (
    SELECT id, tenant_id, priority, available_at FROM action_runs
    WHERE status = 'PENDING' AND available_at <= :now
      AND tenant_id NOT IN (SELECT tenant_id FROM running WHERE n >= :org_limit)
    ORDER BY priority DESC, available_at, id
    LIMIT :scan_limit
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
)
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


class SqliteRunQueue:
    dialect = "sqlite"

    def __init__(self, url: sa.URL) -> None:
        self.url = url

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
        params: dict[str, Any] = {
            "owner": owner,
            "batch": limit,
            "scan_limit": limit * 4,
            "org_limit": org_limit,
            "now": now,
            "lease_until": lease_until,
        }
        rows = (await session.execute(CLAIM_SQL, params)).all()
        return sorted((claimed_from_row(r) for r in rows), key=lambda run: (-run.priority, run.id))

    async def publish(self, session: AsyncSession, wakeup: Wakeup) -> None:
        hub = hub_for(self.url)

        def on_commit(_session: Session) -> None:
            hub.publish(wakeup)

        sa.event.listen(session.sync_session, "after_commit", on_commit, once=True)

    async def listen(self, hub: WakeupHub) -> None:
        # In-process publishers already reach the hub; there is no other process to hear from.
        await asyncio.Event().wait()
