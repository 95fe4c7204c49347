"""``vai``: the command line. Each command runs its async work with ``eventloop.run`` (uvloop where it exists).

Every command lives in its own module and is imported only when it runs: ``vai --help`` imports none of them, and
``vai org list`` imports ``cli/orgs.py`` (SQLAlchemy) but not the API app, DuckDB, dlt or the model providers. The
table below is the whole command line; ``tests/cli/test_startup.py`` checks that each entry's help is the help of the
command it loads and that importing this module pulls in nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # typer carries its own copy of click; its groups take and return these types
    from typer._click import Command, Context


@dataclass(frozen=True)
class Entry:
    """A top-level command: ``module:attribute`` (a ``typer.Typer`` or a command function) and its one-line help."""

    target: str
    help: str


COMMANDS: dict[str, Entry] = {
    "org": Entry("virtuousai.cli.orgs:org_app", "Organizations (tenants)."),
    "key": Entry("virtuousai.cli.orgs:key_app", "API keys."),
    "automation": Entry("virtuousai.cli.automations:automation_app", "Automations: DAG workflows of actions."),
    "keys": Entry(
        "virtuousai.cli.keys:keys_app", "Encryption keys of connection secrets: status, rotate, rewrap, retire."
    ),
    "agent": Entry("virtuousai.cli.agents:agent_app", "Agent specs (markdown with YAML frontmatter), and running one."),
    "run": Entry(
        "virtuousai.cli.remote_runs:run", "Start an action run on the server (VAI_URL); --follow to watch it."
    ),
    "runs": Entry(
        "virtuousai.cli.remote_runs:runs_app",
        "Action runs on the server (VAI_URL): list, show, cancel, approve, reject.",
    ),
    "query": Entry(
        "virtuousai.cli.remote_data:query", "Run a read-only SQL query on the lake, through the server (VAI_URL)."
    ),
    "connections": Entry(
        "virtuousai.cli.remote_data:connections_app", "Connections on the server (VAI_URL): list, create, test."
    ),
    "serve": Entry("virtuousai.cli.serve:serve", "Serve the API."),
    "worker": Entry("virtuousai.cli.worker:worker", "Claim and execute action runs until SIGTERM or SIGINT."),
    "migrate": Entry("virtuousai.cli.migrate:migrate", "Apply database migrations."),
}


def load(name: str) -> Command:
    """The click command behind ``COMMANDS[name]``, imported now."""
    module_name, attribute = COMMANDS[name].target.split(":")
    target: Any = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(target, typer.Typer):
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        target = single
    command = typer.main.get_command(target)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """Lists every entry of ``COMMANDS`` (with its help) without importing it; imports the one that runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, entry in COMMANDS.items():
            self.add_command(TyperCommand(name, help=entry.help, add_help_option=False), name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in COMMANDS:
            return args[0], load(args[0]), args[1:]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=LazyGroup,
    help="VirtuousAI: the execution backbone for AI-powered data workflows.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    pass  # a group of COMMANDS (typer needs a callback for a group with no commands of its own)


if __name__ == "__main__":  # pragma: no cover
    app()
