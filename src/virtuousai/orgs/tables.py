from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, TenantMixin, TimestampMixin, tenant_fk, tenant_table_args


class Role(enum.StrEnum):
    """Roles, weakest first. A role may do everything the roles before it may."""

    viewer = "viewer"
    member = "member"
    admin = "admin"
    owner = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class Organization(TimestampMixin, Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # Per-organization policy knobs (approval policy, concurrency limit, model aliases, ...), owned by each
    # primitive's service; stored as one document so new knobs need no migration.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(TimestampMixin, Base):
    """A person. Users are global (one person may belong to several organizations); everything they own is
    reached through a membership, which is tenant-owned."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Membership(TenantMixin, TimestampMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = tenant_table_args(sa.UniqueConstraint("tenant_id", "user_id"))

    user_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(sa.Enum(Role, native_enum=False, length=16))


class ApiKey(TenantMixin, Base):
    """An API key. The plaintext is shown once; we keep a lookup prefix and a SHA-256 of the whole key.

    Keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to brute-force."""

    __tablename__ = "api_keys"
    __table_args__ = tenant_table_args(tenant_fk(("tenant_id", "membership_id"), "memberships", ondelete="CASCADE"))

    membership_id: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    # The key's own ceiling; the effective role is the weaker of this and the membership's role.
    role: Mapped[Role] = mapped_column(sa.Enum(Role, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
