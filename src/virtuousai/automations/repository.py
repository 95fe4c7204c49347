"""Queries for automations and their versions (every read starts from ``base_query()``: this tenant only), and the
cron scheduler's reads across tenants. Runs, steps and their events are ``run_repository.py``'s."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.automations.tables import (
    Automation,
    AutomationTriggerTick,
    AutomationVersion,
)
from virtuousai.ids import has_prefix
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantRepository


class AutomationRepository(TenantRepository[Automation]):
    model = Automation

    def live(self) -> sa.Select[tuple[Automation]]:
        return self.base_query().where(Automation.deleted_at.is_(None))

    async def by_ref(self, ref: str) -> Automation | None:
        """``ref`` is an id (``aut_…``) or ``slug:<slug>``; deleted automations are not found."""
        if ref.startswith("slug:"):
            stmt = self.live().where(Automation.slug == ref.removeprefix("slug:"))
        elif has_prefix(ref, "aut"):
            stmt = self.live().where(Automation.id == ref)
        else:
            return None
        result: Automation | None = await self.session.scalar(stmt)
        return result

    async def by_slug_for_update(self, slug: str) -> Automation | None:
        result: Automation | None = await self.session.scalar(
            self.live().where(Automation.slug == slug).with_for_update()
        )
        return result

    async def list_live(self, page: PageRequest) -> PageResult[Automation]:
        return await self.paginate(self.live(), page)


class AutomationVersionRepository(TenantRepository[AutomationVersion]):
    model = AutomationVersion

    async def number(self, automation_id: str, version: int) -> AutomationVersion | None:
        result: AutomationVersion | None = await self.session.scalar(
            self.base_query().where(
                AutomationVersion.automation_id == automation_id, AutomationVersion.version == version
            )
        )
        return result

    async def list_for(self, automation_id: str, page: PageRequest) -> PageResult[AutomationVersion]:
        return await self.paginate(self.base_query().where(AutomationVersion.automation_id == automation_id), page)


class SchedulerLookup:
    """The scheduler's queries across tenants: which automations have cron triggers, and each trigger's last tick.
    It then acts within each automation's own tenant."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current_versions(self) -> list[tuple[Automation, AutomationVersion]]:
        """Every live automation with its current version (the caller keeps those with cron triggers)."""
        stmt = (
            sa.select(Automation, AutomationVersion)
            .join(
                AutomationVersion,
                sa.and_(
                    AutomationVersion.automation_id == Automation.id,
                    AutomationVersion.version == Automation.current_version,
                ),
            )
            .where(Automation.deleted_at.is_(None))
            .order_by(Automation.id)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def last_tick(self, automation_id: str, trigger_key: str) -> datetime | None:
        result: datetime | None = await self.session.scalar(
            sa.select(sa.func.max(AutomationTriggerTick.tick)).where(
                AutomationTriggerTick.automation_id == automation_id, AutomationTriggerTick.trigger_key == trigger_key
            )
        )
        if result is not None and result.tzinfo is None:  # max() loses the column type on SQLite
            result = result.replace(tzinfo=UTC)
        return result
