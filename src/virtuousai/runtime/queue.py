"""Every statement a worker runs about the queue, each in its own short transaction, so the worker loop itself
never writes SQL. The dialect-specific claim comes from the driver (in the driver's ``batch_session``: one
statement, no BEGIN/COMMIT on PostgreSQL); the rest is portable SQLAlchemy Core. Outcomes are written by
``runtime/recorder.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import claim_events
from virtuousai.store.drivers import ClaimedRun, RunQueueDriver
from virtuousai.store.engine import transaction
from virtuousai.timeutil import utcnow


@dataclass(frozen=True)
class LeaseStatus:
    """A lease the heartbeat still holds, and whether someone asked the run to stop."""

    run_id: str
    cancel_requested: bool


class RunQueue:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], driver: RunQueueDriver) -> None:
        self.sessions = sessions
        self.driver = driver

    async def claim(
        self, *, owner: str, limit: int, org_limit: int, lease_s: float, now: datetime | None = None
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` runs and append their RUNNING events, in one transaction."""
        now = now or utcnow()
        async with self.driver.batch_session(self.sessions) as session:
            return await self.driver.claim_runs(
                session,
                owner=owner,
                limit=limit,
                org_limit=org_limit,
                now=now,
                lease_until=now + timedelta(seconds=lease_s),
                events=claim_events(owner, limit),
            )

    async def renew_leases(self, leases: Mapping[str, int], *, lease_s: float) -> dict[str, LeaseStatus]:
        """Extend every lease still held (``run_id → token``); a run missing from the answer was lost."""
        if not leases:
            return {}
        now = utcnow()
        stmt = (
            sa.update(ActionRun)
            .where(
                ActionRun.status == RunStatus.RUNNING,
                sa.tuple_(ActionRun.id, ActionRun.lease_token).in_(list(leases.items())),
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(ActionRun.id, ActionRun.cancel_requested_at)
            .execution_options(synchronize_session=False)
        )
        async with transaction(self.sessions) as session:
            rows = (await session.execute(stmt)).all()
        return {run_id: LeaseStatus(run_id, cancel_at is not None) for run_id, cancel_at in rows}

    async def cancel_requested(self, leases: Mapping[str, int]) -> set[str]:
        """Of these runs, the ones someone asked to stop (a read; the abort poller runs it often)."""
        if not leases:
            return set()
        stmt = sa.select(ActionRun.id).where(
            sa.tuple_(ActionRun.id, ActionRun.lease_token).in_(list(leases.items())),
            ActionRun.cancel_requested_at.is_not(None),
        )
        async with transaction(self.sessions) as session:
            return set((await session.scalars(stmt)).all())

    async def expired_leases(self, *, now: datetime, limit: int) -> list[ExpiredLease]:
        """RUNNING runs whose lease ran out: their worker died, hangs, or lost the database."""
        stmt = (
            sa.select(
                ActionRun.id,
                ActionRun.tenant_id,
                ActionRun.kind,
                ActionRun.attempt,
                ActionRun.max_attempts,
                ActionRun.lease_token,
                ActionRun.cancel_requested_at,
            )
            .where(ActionRun.status == RunStatus.RUNNING, ActionRun.lease_expires_at < now)
            .order_by(ActionRun.lease_expires_at)
            .limit(limit)
        )
        async with transaction(self.sessions) as session:
            rows = (await session.execute(stmt)).all()
        return [ExpiredLease(*row) for row in rows]


@dataclass(frozen=True)
class ExpiredLease:
    id: str
    tenant_id: str
    kind: str
    attempt: int
    max_attempts: int
    lease_token: int
    cancel_requested_at: datetime | None

    @property
    def status(self) -> RunStatus:
        return RunStatus.RUNNING
