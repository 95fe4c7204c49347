"""Queries on action runs and their events, always within one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent, RunOrigin
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantRepository


class ActionRunRepository(TenantRepository[ActionRun]):
    model = ActionRun

    async def get_by_idempotency_key(self, key: str) -> ActionRun | None:
        result: ActionRun | None = await self.session.scalar(
            self.base_query().where(ActionRun.idempotency_key == key).execution_options(populate_existing=True)
        )
        return result

    async def get_fresh(self, run_id: str) -> ActionRun | None:
        """Re-read from the database, replacing what the session remembers (guarded UPDATEs bypass the ORM)."""
        result: ActionRun | None = await self.session.scalar(
            self.base_query().where(ActionRun.id == run_id).execution_options(populate_existing=True)
        )
        return result

    async def status_of(self, run_id: str) -> RunStatus | None:
        status: RunStatus | None = await self.session.scalar(
            sa.select(ActionRun.status).where(ActionRun.tenant_id == self.tenant_id, ActionRun.id == run_id)
        )
        return status

    async def list(
        self,
        page: PageRequest,
        *,
        status: RunStatus | None = None,
        kind: str | None = None,
        origin: RunOrigin | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> PageResult[ActionRun]:
        stmt = self.base_query()
        if status is not None:
            stmt = stmt.where(ActionRun.status == status)
        if kind is not None:
            stmt = stmt.where(ActionRun.kind == kind)
        if origin is not None:
            stmt = stmt.where(ActionRun.origin == origin)
        if created_after is not None:
            stmt = stmt.where(ActionRun.created_at >= created_after)
        if created_before is not None:
            stmt = stmt.where(ActionRun.created_at < created_before)
        return await self.paginate(stmt, page)


class ActionRunEventRepository(TenantRepository[ActionRunEvent]):
    model = ActionRunEvent

    async def after(self, run_id: str, after_seq: int, limit: int = 500) -> Sequence[ActionRunEvent]:
        stmt = (
            self.base_query()
            .where(ActionRunEvent.run_id == run_id, ActionRunEvent.seq > after_seq)
            .order_by(ActionRunEvent.seq)
            .limit(limit)
        )
        events: Sequence[ActionRunEvent] = (await self.session.scalars(stmt)).all()  # type: ignore[assignment]
        return events
