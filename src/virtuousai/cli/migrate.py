"""``vai migrate``: apply the database migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from virtuousai import eventloop
from virtuousai.config import Settings
from virtuousai.store import migrate as migrations
from virtuousai.store.engine import make_engine


def migrate(
    revision: Annotated[str, typer.Option("--to", help="Target revision.")] = "heads",
) -> None:
    """Apply database migrations (SQLite or PostgreSQL, from VAI_DATABASE_URL)."""

    async def run() -> None:
        engine = make_engine(Settings().resolved_database_url)
        try:
            await migrations.upgrade(engine, revision)
            typer.echo(f"database at {', '.join(sorted(await migrations.current_heads(engine)))}")
        finally:
            await engine.dispose()

    eventloop.run(run())
