"""runtime: action runs and their events

Revision ID: 0002_runtime
Revises: 0001_foundation
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0002_runtime"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "action_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("inputs", JSONDoc, nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("output", JSONDoc, nullable=True),
        sa.Column("error", JSONDoc, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("automation_run_id", sa.String(40), nullable=True),
        sa.Column("step_key", sa.String(200), nullable=True),
        sa.Column("agent_run_id", sa.String(40), nullable=True),
        sa.Column("turn_id", sa.String(40), nullable=True),
        sa.Column("message_id", sa.String(40), nullable=True),
        sa.Column("trigger_id", sa.String(40), nullable=True),
        sa.Column("template_snapshot", JSONDoc, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("available_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.BigInteger, nullable=False),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("last_event_seq", sa.Integer, nullable=False),
        sa.Column("requires_approval", sa.Boolean, nullable=False),
        sa.Column("approved_inputs_hash", sa.String(64), nullable=True),
        sa.Column("approved_by", sa.String(40), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("rejected_by", sa.String(40), nullable=True),
        sa.Column("rejected_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
    )
    op.create_index("ix_action_runs_tenant_id", "action_runs", ["tenant_id"])
    op.create_index("ix_action_runs_tenant_status", "action_runs", ["tenant_id", "status", "id"])
    # Claiming reads only this small partial index, so history does not slow the hot path.
    op.create_index(
        "ix_action_runs_claimable",
        "action_runs",
        [sa.text("priority DESC"), "available_at", "id"],
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    )
    op.create_index(
        "ix_action_runs_running",
        "action_runs",
        ["tenant_id", "lease_expires_at"],
        postgresql_where=sa.text("status = 'RUNNING'"),
        sqlite_where=sa.text("status = 'RUNNING'"),
    )
    op.create_table(
        "action_run_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("data", JSONDoc, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("run_id", "seq"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "run_id"], ["action_runs.tenant_id", "action_runs.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_action_run_events_tenant_id", "action_run_events", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("action_run_events")
    op.drop_table("action_runs")
