from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, TenantMixin, TimestampMixin, tenant_fk, tenant_table_args
from virtuousai.timeutil import utcnow


class TemplateKind(enum.StrEnum):
    action = "action"  # body: {kind, inputs, priority?, timeout_s?, max_attempts?} → one ActionRun
    automation = "automation"  # body: an automation definition (instantiated by the automations primitive)


class Template(TenantMixin, TimestampMixin, Base):
    """The mutable head of a template: its name and slug, and which version is current. The content (parameters
    and body) lives in ``TemplateVersion`` rows, which never change once written."""

    __tablename__ = "templates"
    __table_args__ = tenant_table_args(sa.UniqueConstraint("tenant_id", "slug"))

    kind: Mapped[TemplateKind] = mapped_column(sa.Enum(TemplateKind, native_enum=False, length=20))
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    current_version: Mapped[int] = mapped_column(default=1)


class TemplateVersion(TenantMixin, Base):
    """One immutable version: the parameters' JSON schema, the body, and the hash of both (with the kind)."""

    __tablename__ = "template_versions"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("tenant_id", "template_id", "version"),
        tenant_fk(("tenant_id", "template_id"), "templates", ondelete="CASCADE"),
    )

    template_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column()
    parameters: Mapped[dict[str, Any]] = mapped_column()
    body: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
