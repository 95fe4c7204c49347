"""drop the single-column tenant_id indexes: each tenant table's unique (tenant_id, id) already serves them

Revision ID: 0008_tenant_indexes
Revises: 0007_automation_templates
Create Date: 2026-11-22

Every ``TenantMixin`` table had both ``ix_<table>_tenant_id`` (tenant_id) and the unique ``(tenant_id, id)`` that
composite foreign keys reference. A lookup by tenant (or the cascade of an organization's delete) uses the
composite index's leading column as well as it would the single one, so the single index only cost a write on every
insert and on every update that cannot be HOT: on the hot path of a run, ~6 of the ~34 index entries a chain step
writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_tenant_indexes"
down_revision: str | Sequence[str] | None = "0007_automation_templates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = (
    "memberships",
    "api_keys",
    "action_runs",
    "action_run_events",
    "connections",
    "templates",
    "template_versions",
    "agent_specs",
    "agent_spec_versions",
    "automations",
    "automation_versions",
    "automation_runs",
    "automation_step_runs",
    "automation_run_events",
    "automation_trigger_ticks",
)


def upgrade() -> None:
    for table in TENANT_TABLES:
        op.drop_index(f"ix_{table}_tenant_id", table_name=table)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
