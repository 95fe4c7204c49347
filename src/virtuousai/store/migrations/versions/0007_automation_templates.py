"""automation templates: template snapshots and pinned template versions on automation runs; merges the heads

Revision ID: 0007_automation_templates
Revises: 0006_automations, 0003_connections, 0004_agents
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from virtuousai.store.base import JSONDoc

revision: str = "0007_automation_templates"
# Also the merge point of the primitives' branches: after it the migration graph has one head again.
down_revision: str | Sequence[str] | None = ("0006_automations", "0003_connections", "0004_agents")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("automations") as batch:
        # The template an automation was instantiated from: only that template may add versions to it.
        batch.add_column(sa.Column("template_id", sa.String(40), nullable=True))
    with op.batch_alter_table("automation_runs") as batch:
        # kind=automation templates: what the run was made from (TemplateSnapshot), kept whatever the template does.
        batch.add_column(sa.Column("template_snapshot", JSONDoc, nullable=True))
        # The template version each template step of the run uses, fixed when the run starts.
        batch.add_column(sa.Column("template_pins", JSONDoc, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automation_runs") as batch:
        batch.drop_column("template_pins")
        batch.drop_column("template_snapshot")
    with op.batch_alter_table("automations") as batch:
        batch.drop_column("template_id")
