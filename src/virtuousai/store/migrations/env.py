"""Alembic environment. Migrations run on a connection handed in by ``virtuousai.store.migrate``."""

from __future__ import annotations

from alembic import context

from virtuousai.store.base import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - we only run migrations through virtuousai.store.migrate
    raise RuntimeError("run migrations with `vai migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
