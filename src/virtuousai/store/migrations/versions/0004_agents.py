"""agents: agent specs and their immutable versions

Revision ID: 0004_agents
Revises: 0001_foundation
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0004_agents"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_specs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "id"),
    )
    op.create_index("ix_agent_specs_tenant_id", "agent_specs", ["tenant_id"])
    op.create_index(
        "uq_agent_specs_live_slug",
        "agent_specs",
        ["tenant_id", "slug"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "agent_spec_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("spec_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("tools", JSONDoc, nullable=False),
        sa.Column("sub_agents", JSONDoc, nullable=False),
        sa.Column("permissions", JSONDoc, nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("spec_id", "version"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "spec_id"], ["agent_specs.tenant_id", "agent_specs.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_agent_spec_versions_tenant_id", "agent_spec_versions", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("agent_spec_versions")
    op.drop_index("uq_agent_specs_live_slug", table_name="agent_specs")
    op.drop_table("agent_specs")
