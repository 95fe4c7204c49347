"""agent runs: runs of an agent spec version, their steps (model calls, tool calls, delegations), events, feedback

Revision ID: 0010_agent_runs
Revises: 0009_parent_runs
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0010_agent_runs"
down_revision: str | Sequence[str] | None = "0009_parent_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)


def _of_run() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "agent_run_id"], ["agent_runs.tenant_id", "agent_runs.id"], ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant(),
        sa.Column("spec_id", sa.String(40), nullable=False),
        sa.Column("spec_version_id", sa.String(40), nullable=False),
        sa.Column("spec_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("context", JSONDoc, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("parent_run_id", sa.String(40), nullable=True),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("turn_id", sa.String(40), nullable=True),
        sa.Column("message_id", sa.String(40), nullable=True),
        sa.Column("cost", sa.String(40), nullable=False),
        sa.Column("cost_unknown", sa.Boolean, nullable=False),
        sa.Column("budget", sa.String(40), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("model_calls", sa.Integer, nullable=False),
        sa.Column("running_s", sa.Float, nullable=False),
        sa.Column("running_since", UTCDateTime(), nullable=True),
        sa.Column("pending_approvals", JSONDoc, nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("last_event_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "spec_id"], ["agent_specs.tenant_id", "agent_specs.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_agent_runs_tenant_spec", "agent_runs", ["tenant_id", "spec_id", "id"])
    op.create_index("ix_agent_runs_active", "agent_runs", ["status", "id"])
    op.create_index("ix_agent_runs_parent", "agent_runs", ["tenant_id", "parent_run_id"])
    op.create_table(
        "agent_run_steps",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant(),
        sa.Column("agent_run_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("parents", JSONDoc, nullable=False),
        sa.Column("tool", sa.String(100), nullable=True),
        sa.Column("tool_call_id", sa.String(200), nullable=True),
        sa.Column("args", JSONDoc, nullable=True),
        sa.Column("action_run_id", sa.String(40), nullable=True),
        sa.Column("child_run_id", sa.String(40), nullable=True),
        sa.Column("result", JSONDoc, nullable=True),
        sa.Column("error", JSONDoc, nullable=True),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("cost", sa.String(40), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("agent_run_id", "position"),
        _of_run(),
    )
    op.create_table(
        "agent_run_events",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant(),
        sa.Column("agent_run_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", JSONDoc, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("agent_run_id", "seq"),
        _of_run(),
    )
    op.create_table(
        "agent_run_feedback",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant(),
        sa.Column("agent_run_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("agent_run_id", "user_id"),
        _of_run(),
    )


def downgrade() -> None:
    op.drop_table("agent_run_feedback")
    op.drop_table("agent_run_events")
    op.drop_table("agent_run_steps")
    op.drop_index("ix_agent_runs_parent", table_name="agent_runs")
    op.drop_index("ix_agent_runs_active", table_name="agent_runs")
    op.drop_index("ix_agent_runs_tenant_spec", table_name="agent_runs")
    op.drop_table("agent_runs")
