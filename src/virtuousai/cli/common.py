"""Helpers shared by CLI commands: settings, an engine for one command, JSON output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.errors import VaiError
from virtuousai.store.engine import make_engine, make_sessionmaker
from virtuousai.timeutil import json_default


@asynccontextmanager
async def open_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.resolved_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def echo_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, default=json_default))


def fail(exc: VaiError) -> None:
    """Print a domain error the way the API would describe it, and exit non-zero."""
    typer.echo(f"error: {exc.detail}", err=True)
    for err in exc.errors:
        typer.echo(f"  {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
    raise typer.Exit(code=2)
