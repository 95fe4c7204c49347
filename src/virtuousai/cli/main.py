"""``vai``: the command line. Each command runs its async work with ``eventloop.run`` (uvloop where it exists)."""

from __future__ import annotations

from typing import Annotated

import typer

from virtuousai import eventloop
from virtuousai.cli.agents import agent_app
from virtuousai.cli.automations import automation_app
from virtuousai.cli.keys import keys_app
from virtuousai.cli.orgs import key_app, org_app
from virtuousai.cli.serve import serve
from virtuousai.cli.worker import worker
from virtuousai.config import Settings

app = typer.Typer(help="VirtuousAI: the execution backbone for AI-powered data workflows.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="key")
app.add_typer(automation_app, name="automation")
app.add_typer(keys_app, name="keys")
app.add_typer(agent_app, name="agent")
app.command("serve")(serve)
app.command("worker")(worker)


@app.command("migrate")
def migrate_cmd(
    revision: Annotated[str, typer.Option("--to", help="Target revision.")] = "heads",
) -> None:
    """Apply database migrations (SQLite or PostgreSQL, from VAI_DATABASE_URL)."""
    from virtuousai.store import migrate
    from virtuousai.store.engine import make_engine

    async def run() -> None:
        engine = make_engine(Settings().resolved_database_url)
        try:
            await migrate.upgrade(engine, revision)
            typer.echo(f"database at {', '.join(sorted(await migrate.current_heads(engine)))}")
        finally:
            await engine.dispose()

    eventloop.run(run())


if __name__ == "__main__":  # pragma: no cover
    app()
