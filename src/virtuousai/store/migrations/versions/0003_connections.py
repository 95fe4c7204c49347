"""connections (sealed secrets) and templates with immutable versions

Revision ID: 0003_connections
Revises: 0001_foundation
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0003_connections"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_column() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant_column(),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(100), nullable=True),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("config", JSONDoc, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("wrapped_key", sa.Text, nullable=False),
        sa.Column("sealed_fields", JSONDoc, nullable=False),
        sa.Column("encryption_format", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "slug"),
    )
    op.create_index("ix_connections_tenant_id", "connections", ["tenant_id"])
    op.create_index("ix_connections_key_version", "connections", ["key_version"])
    # At most one default connection per (organization, provider).
    op.create_index(
        "uq_connections_default_provider",
        "connections",
        ["tenant_id", "provider"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )

    op.create_table(
        "templates",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant_column(),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "slug"),
    )
    op.create_index("ix_templates_tenant_id", "templates", ["tenant_id"])
    op.create_table(
        "template_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant_column(),
        sa.Column("template_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("parameters", JSONDoc, nullable=False),
        sa.Column("body", JSONDoc, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "template_id", "version"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id"], ["templates.tenant_id", "templates.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_template_versions_tenant_id", "template_versions", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("template_versions")
    op.drop_table("templates")
    op.drop_table("connections")
