"""``vai serve``: the API with N in-process workers, one process."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from virtuousai import eventloop
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.crypto.keyfile import InsecureKeyFile, ensure_key_file
from virtuousai.logging import configure_logging
from virtuousai.store import migrate
from virtuousai.store.engine import make_engine, make_sessionmaker


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default VAI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default VAI_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, help="In-process workers (default: 1 on SQLite, 0 on PostgreSQL).")
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Create the demo organization on first start.")
    ] = False,
) -> None:
    """Serve the API. On SQLite, migrations are applied first; on PostgreSQL run `vai migrate`."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.master_key is None:
            ensure_key_file(settings.resolved_master_key_file)
    except InsecureKeyFile as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    eventloop.run(_prepare(settings, demo=demo), settings.event_loop)
    worker_count = workers if workers is not None else settings.workers
    if worker_count is None:
        worker_count = 1 if settings.is_sqlite else 0
    bind_host, bind_port = host or settings.host, port or settings.port
    typer.echo(f"API docs: http://{bind_host}:{bind_port}/docs  ({worker_count} in-process worker(s))")
    app = create_app(settings, workers=worker_count)
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        loop=eventloop.loop_name(settings.event_loop),
        log_config=None,
        access_log=False,
    )


async def _prepare(settings: Settings, *, demo: bool) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        if settings.is_sqlite:
            await migrate.upgrade(engine)
        elif not await migrate.is_current(engine):
            typer.echo("warning: the database schema is not current; run `vai migrate`", err=True)
        if demo or settings.create_demo_org:
            from virtuousai.demo import ensure_demo_organization

            result = await ensure_demo_organization(make_sessionmaker(engine), settings)
            if result.created:
                typer.echo(f"Demo organization {result.org_id} created.")
                typer.echo(f"Owner API key (shown once; also saved to {result.key_file}):")
                typer.echo(f"    {result.api_key}")
            else:
                typer.echo(f"Demo organization {result.org_id}; its owner API key is in {result.key_file}")
    finally:
        await engine.dispose()
