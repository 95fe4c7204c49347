"""``vai worker``: a process that only executes action runs (scale out by starting more, on PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from virtuousai import eventloop
from virtuousai.config import Settings
from virtuousai.logging import configure_logging
from virtuousai.process import ProcessServices
from virtuousai.store.engine import make_engine, make_sessionmaker


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Runs executed at once (default VAI_WORKER_CONCURRENCY)."),
    ] = None,
) -> None:
    """Claim and execute action runs until SIGTERM or SIGINT, then drain: stop claiming, let in-flight runs finish
    (up to VAI_DRAIN_TIMEOUT_S) and release the rest to other workers."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    eventloop.run(_run(settings, concurrency), settings.event_loop)


async def _run(settings: Settings, concurrency: int | None) -> None:
    # Connections are checked only after sitting idle (``store/engine.py``), so the hot path pays no ping. One that
    # died in use fails its statement; SQLAlchemy then discards the pool's connections, and the worker's loops retry
    # (claims after the poll interval, outcomes one by one, heartbeats at the next beat).
    engine = make_engine(settings.resolved_database_url)
    # The worker, the orchestrator of parent runs, the sweep and cron (``process.py``).
    services = ProcessServices(engine, make_sessionmaker(engine), settings, workers=1, concurrency=concurrency)
    runtime = services.runtime
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, services.request_stop)
    try:
        await services.start()
        names = ", ".join(w.name for w in runtime.workers)
        # Tests and supervisors wait for this line before they count on the worker.
        typer.echo(f"worker ready: {names} (concurrency {runtime.workers[0].concurrency})")
        await runtime.wait_stopped()
    finally:
        await services.stop()
        await engine.dispose()
    typer.echo("worker stopped")
