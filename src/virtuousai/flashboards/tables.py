"""A flashboard's tables: the mutable head, its immutable versions, and the rows its last refresh cached."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, TenantMixin, TimestampMixin, tenant_fk, tenant_table_args
from virtuousai.timeutil import utcnow


class Flashboard(TenantMixin, TimestampMixin, Base):
    """The head: which version is current (its title and description copied here for listings), the refresh
    schedule, and the last cron tick a refresher claimed. The content lives in ``FlashboardVersion`` rows."""

    __tablename__ = "flashboards"

    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    current_version: Mapped[int] = mapped_column(default=1)
    refresh_cron: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    # The latest cron tick a refresher claimed (a guarded UPDATE moves it forward: one refresh per tick).
    refreshed_tick: Mapped[datetime | None] = mapped_column(default=None)
    # The agent run whose tool call created the flashboard (null when a person or an automation did).
    agent_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)


class FlashboardVersion(TenantMixin, Base):
    """One immutable version: title, description and tiles (each with the columns its SQL returned at save)."""

    __tablename__ = "flashboard_versions"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("tenant_id", "flashboard_id", "version"),
        tenant_fk(("tenant_id", "flashboard_id"), "flashboards", ondelete="CASCADE"),
    )

    flashboard_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    tiles: Mapped[list[Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    agent_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlashboardCache(TenantMixin, Base):
    """Every tile's rows as the last refresh (``POST …/refresh`` or the cron) got them: one row per flashboard."""

    __tablename__ = "flashboard_caches"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("tenant_id", "flashboard_id"),
        tenant_fk(("tenant_id", "flashboard_id"), "flashboards", ondelete="CASCADE"),
    )

    flashboard_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column()
    tiles: Mapped[list[Any]] = mapped_column()
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
