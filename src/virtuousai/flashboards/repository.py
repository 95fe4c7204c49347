from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.flashboards.tables import Flashboard, FlashboardCache, FlashboardVersion
from virtuousai.store.tenant import TenantRepository


class FlashboardRepository(TenantRepository[Flashboard]):
    model = Flashboard

    async def by_title(self, title: str) -> Flashboard | None:
        result: Flashboard | None = await self.session.scalar(
            self.base_query().where(Flashboard.title == title).order_by(Flashboard.id).limit(1)
        )
        return result


class FlashboardVersionRepository(TenantRepository[FlashboardVersion]):
    model = FlashboardVersion

    def of_flashboard(self, flashboard_id: str) -> sa.Select[tuple[FlashboardVersion]]:
        return self.base_query().where(FlashboardVersion.flashboard_id == flashboard_id)

    async def get_version(self, flashboard_id: str, version: int) -> FlashboardVersion | None:
        result: FlashboardVersion | None = await self.session.scalar(
            self.of_flashboard(flashboard_id).where(FlashboardVersion.version == version)
        )
        return result


class FlashboardCacheRepository(TenantRepository[FlashboardCache]):
    model = FlashboardCache

    async def of_flashboard(self, flashboard_id: str) -> FlashboardCache | None:
        result: FlashboardCache | None = await self.session.scalar(
            self.base_query().where(FlashboardCache.flashboard_id == flashboard_id)
        )
        return result


class RefreshLookup:
    """The refresher's reads and its claim, across organizations (it serves them all); each row it acts on is then
    handled in its own organization's context."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def scheduled(self) -> list[Flashboard]:
        rows = await self.session.scalars(
            sa.select(Flashboard).where(Flashboard.refresh_cron.is_not(None)).order_by(Flashboard.id)
        )
        return list(rows)

    async def claim_tick(self, flashboard: Flashboard, tick: datetime) -> bool:
        """Move the flashboard's ``refreshed_tick`` to ``tick`` if no one did: true for exactly one caller."""
        result = await self.session.execute(
            sa.update(Flashboard)
            .where(
                Flashboard.tenant_id == flashboard.tenant_id,
                Flashboard.id == flashboard.id,
                Flashboard.refresh_cron == flashboard.refresh_cron,
                sa.or_(Flashboard.refreshed_tick.is_(None), Flashboard.refreshed_tick < tick),
            )
            .values(refreshed_tick=tick)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)
