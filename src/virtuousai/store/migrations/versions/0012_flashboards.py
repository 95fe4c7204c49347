"""flashboards: the head, its immutable versions, and the cache of the last refresh

Revision ID: 0012_flashboards
Revises: 0011_table_descriptions
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0012_flashboards"
down_revision: str | Sequence[str] | None = "0011_table_descriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    ]


def _flashboard_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "flashboard_id"], ["flashboards.tenant_id", "flashboards.id"], ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "flashboards",
        *_tenant_columns(),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("refresh_cron", sa.String(200), nullable=True),
        sa.Column("refreshed_tick", UTCDateTime, nullable=True),
        sa.Column("agent_run_id", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
    )
    op.create_table(
        "flashboard_versions",
        *_tenant_columns(),
        sa.Column("flashboard_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("tiles", JSONDoc, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("agent_run_id", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "flashboard_id", "version"),
        _flashboard_fk(),
    )
    op.create_table(
        "flashboard_caches",
        *_tenant_columns(),
        sa.Column("flashboard_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tiles", JSONDoc, nullable=False),
        sa.Column("refreshed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "flashboard_id"),
        _flashboard_fk(),
    )


def downgrade() -> None:
    op.drop_table("flashboard_caches")
    op.drop_table("flashboard_versions")
    op.drop_table("flashboards")
