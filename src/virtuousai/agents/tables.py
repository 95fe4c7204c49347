"""Agent specs and their immutable versions.

``agent_specs`` is the stable identity (id, slug) with the current version's summary for listing; every create or
update appends an ``agent_spec_versions`` row that never changes again, so a run can pin the exact version it ran.
A deleted spec keeps its versions (runs refer to them) and frees its slug.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, TenantMixin, tenant_fk, tenant_table_args


class AgentSpec(TenantMixin, Base):
    __tablename__ = "agent_specs"
    __table_args__ = tenant_table_args(
        # One live spec per slug in an organization; deleted ones do not count.
        sa.Index(
            "uq_agent_specs_live_slug",
            "tenant_id",
            "slug",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    slug: Mapped[str] = mapped_column(sa.String(63))
    name: Mapped[str] = mapped_column(sa.String(200))
    mode: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    current_version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class AgentSpecVersion(TenantMixin, Base):
    __tablename__ = "agent_spec_versions"
    __table_args__ = tenant_table_args(
        tenant_fk(("tenant_id", "spec_id"), "agent_specs", ondelete="CASCADE"),
        sa.UniqueConstraint("spec_id", "version"),
    )

    spec_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column(sa.Integer)
    markdown: Mapped[str] = mapped_column(sa.Text)
    # The parsed document, so readers (API, runtime) need not parse again.
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(63))
    mode: Mapped[str] = mapped_column(sa.String(16))
    model: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    tools: Mapped[list[Any]] = mapped_column()
    sub_agents: Mapped[list[Any]] = mapped_column()
    permissions: Mapped[dict[str, Any]] = mapped_column()
    description: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    instructions: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
