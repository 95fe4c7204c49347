"""one parent reference on ActionRuns, and what a parent run's pass reads in O(1)

Revision ID: 0009_parent_runs
Revises: 0008_tenant_indexes
Create Date: 2026-12-01

An ActionRun made by a parent run (an automation run's step, an agent run's tool call) carried the parent in a
column per parent kind (``automation_run_id``, ``agent_run_id``), which the runtime had to know about. Now it carries
one ``parent_run_id`` (the parent's kind is its id's prefix: ``arun_…``, ``agrun_…``) and the runtime knows nothing
else about parents. The API still shows ``automation_run_id`` and ``agent_run_id``, derived from it.

``ix_action_runs_parent`` (tenant, parent, step, status; it replaces ``ix_action_runs_automation_step``) answers what a pass asks about a step's runs — is any still
active, which failed first — with a few index seeks, however many items a fan-out has. ``launched`` on a step counts
the ActionRuns created for it so far (items 0 … launched-1), so a fan-out created a chunk at a time knows where it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_parent_runs"
down_revision: str | Sequence[str] | None = "0008_tenant_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_action_runs_automation_step", table_name="action_runs")  # replaced by ix_action_runs_parent
    with op.batch_alter_table("action_runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(40), nullable=True))
    op.execute("UPDATE action_runs SET parent_run_id = coalesce(automation_run_id, agent_run_id)")
    with op.batch_alter_table("action_runs") as batch:
        batch.drop_column("automation_run_id")
        batch.drop_column("agent_run_id")
    _recreate_claimable_index()
    op.create_index(
        "ix_action_runs_parent",
        "action_runs",
        ["tenant_id", "parent_run_id", "step_key", "status"],
        postgresql_where=sa.text("parent_run_id IS NOT NULL"),
        sqlite_where=sa.text("parent_run_id IS NOT NULL"),
    )
    with op.batch_alter_table("automation_step_runs") as batch:
        batch.add_column(sa.Column("launched", sa.Integer, nullable=False, server_default="0"))


def _recreate_claimable_index() -> None:
    # SQLite's batch mode rebuilds the table and its indexes from reflection, which loses ``priority DESC``.
    op.drop_index("ix_action_runs_claimable", table_name="action_runs")
    op.create_index(
        "ix_action_runs_claimable",
        "action_runs",
        [sa.text("priority DESC"), "available_at", "id"],
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    with op.batch_alter_table("automation_step_runs") as batch:
        batch.drop_column("launched")
    op.drop_index("ix_action_runs_parent", table_name="action_runs")
    with op.batch_alter_table("action_runs") as batch:
        batch.add_column(sa.Column("automation_run_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("agent_run_id", sa.String(40), nullable=True))
    op.execute("UPDATE action_runs SET automation_run_id = parent_run_id WHERE parent_run_id LIKE 'arun%'")
    op.execute("UPDATE action_runs SET agent_run_id = parent_run_id WHERE parent_run_id LIKE 'agrun%'")
    with op.batch_alter_table("action_runs") as batch:
        batch.drop_column("parent_run_id")
    _recreate_claimable_index()
    op.create_index("ix_action_runs_automation_step", "action_runs", ["automation_run_id", "step_key"])
