"""PostgreSQL: claim with ``FOR UPDATE SKIP LOCKED``; wake-ups with ``LISTEN``/``NOTIFY`` (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.store.drivers import (
    CLAIM_PARAM_TYPES,
    CLAIM_RESULT_TYPES,
    CLAIM_RETURNING,
    ClaimedRun,
    claimed_from_row,
)
from virtuousai.store.drivers.wakeups import Wakeup, WakeupHub

log = logging.getLogger(__name__)

CHANNEL = "vai_action_runs"

# claim_runs: organizations at their limit are skipped while scanning (so their backlog cannot hide other
# organizations' runs); within the batch, row_number() keeps each organization under the limit. Two workers
# claiming at the same instant may each count the same running rows, so the limit is exact per statement and may
# be exceeded by at most one batch under contention (documented in docs/runtime.md).
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
    FOR UPDATE SKIP LOCKED
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
    attempt = action_runs.attempt + 1,
    lease_token = action_runs.lease_token + 1,
    lease_owner = :owner,
    lease_expires_at = :lease_until,
    started_at = :now,
    updated_at = :now,
    last_event_seq = action_runs.last_event_seq + 1
FROM chosen WHERE action_runs.id = chosen.id
RETURNING {", ".join("action_runs." + c.strip() for c in CLAIM_RETURNING.split(","))}
"""
    )
    .bindparams(*CLAIM_PARAM_TYPES)
    .columns(**CLAIM_RESULT_TYPES)
)


def asyncpg_dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresRunQueue:
    dialect = "postgresql"

    def __init__(self, url: sa.URL, *, reconnect_delay_s: float = 1.0) -> None:
        self.url = url
        self.reconnect_delay_s = reconnect_delay_s

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
            # Lock a few more rows than we take, so the per-organization filter still fills the batch.
            "scan_limit": limit * 4,
            "org_limit": org_limit,
            "now": now,
            "lease_until": lease_until,
        }
        rows = (await session.execute(CLAIM_SQL, params)).all()
        return sorted((claimed_from_row(r) for r in rows), key=lambda run: (-run.priority, run.id))

    async def publish(self, session: AsyncSession, wakeup: Wakeup) -> None:
        # NOTIFY is transactional: listeners hear it at commit, never for a rolled-back change.
        await session.execute(sa.select(sa.func.pg_notify(CHANNEL, wakeup.encode())))

    async def listen(self, hub: WakeupHub) -> None:
        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            wakeup = Wakeup.decode(payload)
            if wakeup is not None:
                hub.publish(wakeup)

        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.url))
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, on_notify)
                # Anything enqueued while we were not listening is found by this first wake-up.
                hub.publish(Wakeup("enqueued"))
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN failed (%s); polling until it reconnects", type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.reconnect_delay_s)
