"""The declarative base, column types and mixins every table uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from virtuousai.timeutil import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text. Naive datetimes are refused on the way in, so
    no local time can sneak into storage.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use virtuousai.timeutil.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDoc, list[Any]: JSONDoc}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantMixin:
    """A tenant-owned row. ``(tenant_id, id)`` is unique so other rows can reference it by both columns, which makes
    a cross-tenant reference impossible to store. Its index also serves every lookup by tenant, so ``tenant_id``
    has no index of its own (migration 0008 dropped them: one more index entry on every write)."""

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:
        return mapped_column(sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"))

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return tenant_table_args()


def tenant_table_args(*extra: Any) -> tuple[Any, ...]:
    """``__table_args__`` for a tenant table that needs more constraints: ``tenant_table_args(Index(...), ...)``."""
    return (sa.UniqueConstraint("tenant_id", "id"), *extra)


def tenant_fk(columns: tuple[str, str], target: str, *, ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    """A composite foreign key ``(tenant_id, <col>) -> <target>(tenant_id, id)``."""
    return sa.ForeignKeyConstraint(list(columns), [f"{target}.tenant_id", f"{target}.id"], ondelete=ondelete)
