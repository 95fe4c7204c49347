from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.crypto.envelope import FORMAT_VERSION, SealedSecrets
from virtuousai.crypto.rotation import SealedTable
from virtuousai.store.base import Base, TenantMixin, TimestampMixin, tenant_table_args


class Connection(TenantMixin, TimestampMixin, Base):
    """Credentials for one external system. ``config`` is plain; the secrets are sealed: one data key per row,
    wrapped under KEK ``key_version`` (``wrapped_key``), one AES-GCM ciphertext per secret field
    (``sealed_fields``: field name → base64). The field names double as "which secrets are set"."""

    __tablename__ = "connections"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("tenant_id", "slug"),
        # At most one default per provider and organization, enforced by the database too.
        sa.Index(
            "uq_connections_default_provider",
            "tenant_id",
            "provider",
            unique=True,
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        ),
    )

    provider: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_default: Mapped[bool] = mapped_column(default=False)
    key_version: Mapped[int] = mapped_column(index=True)
    wrapped_key: Mapped[str] = mapped_column(sa.Text)
    sealed_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    encryption_format: Mapped[int] = mapped_column(default=FORMAT_VERSION)

    @property
    def sealed(self) -> SealedSecrets:
        return SealedSecrets(self.key_version, self.wrapped_key, dict(self.sealed_fields), self.encryption_format)

    @sealed.setter
    def sealed(self, value: SealedSecrets) -> None:
        self.key_version = value.key_version
        self.wrapped_key = value.wrapped_key
        self.sealed_fields = dict(value.fields)
        self.encryption_format = value.format_version

    @property
    def secret_fields_set(self) -> list[str]:
        return sorted(self.sealed_fields)


SEALED_CONNECTIONS = SealedTable(purpose="connection", table=Connection.__table__)  # type: ignore[arg-type]
