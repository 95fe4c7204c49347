"""What the organization wrote about its lake tables: a description of each table and of its columns.

The lake itself needs no table (the catalog is read from the manifests); descriptions are the one thing about a
table that people write, so they live in the database, keyed by the table's three-part name. ``explain_schema``
gives them to the model next to what the data says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, JSONDoc, TenantMixin, tenant_table_args


class TableDescription(TenantMixin, Base):
    __tablename__ = "table_descriptions"
    __table_args__ = tenant_table_args(sa.UniqueConstraint("tenant_id", "table_name"))

    table_name: Mapped[str] = mapped_column(sa.String(200))  # layer.dataset.table
    description: Mapped[str] = mapped_column(sa.Text)
    columns: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # {column: description}
    updated_at: Mapped[datetime] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
