"""automations: automations, immutable versions, runs, step states, run events, cron ticks

Revision ID: 0006_automations
Revises: 0002_runtime
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc, UTCDateTime

revision: str = "0006_automations"
# Automation runs reference action runs (their steps), so this builds on the runtime.
down_revision: str | Sequence[str] | None = "0002_runtime"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "automations",
        *_tenant_columns(),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
    )
    op.create_index("ix_automations_tenant_id", "automations", ["tenant_id"])
    op.create_index(
        "uq_automations_tenant_slug_live",
        "automations",
        ["tenant_id", "slug"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "automation_versions",
        *_tenant_columns(),
        sa.Column("automation_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", JSONDoc, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("automation_id", "version"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "automation_id"], ["automations.tenant_id", "automations.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_automation_versions_tenant_id", "automation_versions", ["tenant_id"])
    op.create_table(
        "automation_runs",
        *_tenant_columns(),
        sa.Column("automation_id", sa.String(40), nullable=False),
        sa.Column("version_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", JSONDoc, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_key", sa.String(64), nullable=True),
        sa.Column("tick", UTCDateTime(), nullable=True),
        sa.Column("retry_of", sa.String(40), nullable=True),
        sa.Column("error", JSONDoc, nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("last_event_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "automation_id"], ["automations.tenant_id", "automations.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "version_id"], ["automation_versions.tenant_id", "automation_versions.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_automation_runs_tenant_id", "automation_runs", ["tenant_id"])
    op.create_index("ix_automation_runs_active", "automation_runs", ["status", "id"])
    op.create_index("ix_automation_runs_automation", "automation_runs", ["tenant_id", "automation_id", "id"])
    op.create_table(
        "automation_step_runs",
        *_tenant_columns(),
        sa.Column("automation_run_id", sa.String(40), nullable=False),
        sa.Column("step_key", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("item_count", sa.Integer, nullable=True),
        sa.Column("output", JSONDoc, nullable=True),
        sa.Column("error", JSONDoc, nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reused_from", sa.String(40), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("automation_run_id", "step_key"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "automation_run_id"], ["automation_runs.tenant_id", "automation_runs.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_automation_step_runs_tenant_id", "automation_step_runs", ["tenant_id"])
    op.create_table(
        "automation_run_events",
        *_tenant_columns(),
        sa.Column("automation_run_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", JSONDoc, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        sa.UniqueConstraint("automation_run_id", "seq"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "automation_run_id"], ["automation_runs.tenant_id", "automation_runs.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_automation_run_events_tenant_id", "automation_run_events", ["tenant_id"])
    op.create_table(
        "automation_trigger_ticks",
        *_tenant_columns(),
        sa.Column("automation_id", sa.String(40), nullable=False),
        sa.Column("trigger_key", sa.String(64), nullable=False),
        sa.Column("tick", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("automation_run_id", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "id"),
        # The exactly-once claim of a cron tick: whoever inserts this row starts the run.
        sa.UniqueConstraint("automation_id", "trigger_key", "tick"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "automation_id"], ["automations.tenant_id", "automations.id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_automation_trigger_ticks_tenant_id", "automation_trigger_ticks", ["tenant_id"])
    # The engine reads a run's ActionRuns by origin; without this it would scan action_runs.
    op.create_index("ix_action_runs_automation_step", "action_runs", ["automation_run_id", "step_key"])


def downgrade() -> None:
    op.drop_index("ix_action_runs_automation_step", table_name="action_runs")
    op.drop_table("automation_trigger_ticks")
    op.drop_table("automation_run_events")
    op.drop_table("automation_step_runs")
    op.drop_table("automation_runs")
    op.drop_table("automation_versions")
    op.drop_table("automations")
