"""``vai agent …``: apply, list and validate agent specs (markdown files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from virtuousai.agents.service import AgentSpecService
from virtuousai.agents.spec import parse_spec
from virtuousai.cli.common import OrgOption, open_org, run
from virtuousai.cli.output import EXIT_FAILED, JsonListOption, JsonObjectOption, echo_json, print_table
from virtuousai.errors import VaiError
from virtuousai.store.pagination import MAX_LIMIT, PageRequest

agent_app = typer.Typer(
    help="Agent specs (markdown with YAML frontmatter).", no_args_is_help=True, add_completion=False
)

FileArgument = Annotated[Path, typer.Argument(help="The spec, e.g. examples/agents/data-analyst.md.", exists=True)]
MARKDOWN_LOC_LENGTH = 2  # errors' loc starts with ["body", "markdown"]


def print_errors(path: Path, exc: VaiError) -> NoReturn:
    """``FILE:LINE: field.path: message`` per error (the compiler convention, so editors can jump to it)."""
    if not exc.errors:
        typer.echo(f"{path}: {exc.detail}", err=True)
    for error in exc.errors:
        field = ".".join(str(part) for part in error["loc"][MARKDOWN_LOC_LENGTH:]) or "document"
        where = f"{path}:{error['line']}" if "line" in error else str(path)
        typer.echo(f"{where}: {field}: {error['msg']}", err=True)
    raise typer.Exit(code=EXIT_FAILED)


@agent_app.command("validate")
def agent_validate(
    path: FileArgument,
    org: Annotated[str | None, typer.Option("--org", help="Also check against this organization.")] = None,
) -> None:
    """Check a spec; prints each error with its line and exits non-zero if there are any."""
    markdown = path.read_text(encoding="utf-8")

    async def main() -> None:
        if org is None:
            parse_spec(markdown)
            return
        async with open_org(org) as (sessions, tenant), sessions() as session:
            service = AgentSpecService(session, tenant)
            document = parse_spec(markdown)
            existing = await service.specs.get_live_by_slug(document.slug)
            await service.validate(markdown, updating=existing)

    run(main(), report=lambda exc: print_errors(path, exc))
    typer.echo(f"{path}: ok")


@agent_app.command("apply")
def agent_apply(path: FileArgument, org: OrgOption, as_json: JsonObjectOption = False) -> None:
    """Create the agent, or add a new version if its slug exists in the organization."""
    markdown = path.read_text(encoding="utf-8")

    async def main() -> tuple[str, str, int]:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            service = AgentSpecService(session, tenant)
            existing = await service.specs.get_live_by_slug(parse_spec(markdown).slug)
            if existing is None:
                found = await service.create(markdown)
            else:
                found = await service.update(existing.id, markdown)
            return found.spec.id, found.spec.slug, found.version.version

    spec_id, slug, version = run(main(), report=lambda exc: print_errors(path, exc))
    if as_json:
        echo_json({"id": spec_id, "slug": slug, "version": version})
    else:
        typer.echo(f"{slug}: {spec_id} version {version}")


@agent_app.command("list")
def agent_list(org: OrgOption, as_json: JsonListOption = False) -> None:
    """The organization's agents at their current versions."""

    async def main() -> list[dict[str, object]]:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            page = await AgentSpecService(session, tenant).list(PageRequest(limit=MAX_LIMIT))
        return [
            {
                "id": found.spec.id,
                "slug": found.spec.slug,
                "name": found.spec.name,
                "mode": found.spec.mode,
                "version": found.version.version,
                "model": found.version.model,
                "tools": found.version.tools,
            }
            for found in page.items
        ]

    rows = run(main())
    if as_json:
        echo_json(rows)
        return
    columns = ("id", "slug", "name", "mode", "version", "model")
    print_table(
        (*columns, "tools"),
        [
            [*(row[c] for c in columns), ", ".join(map(str, row["tools"])) if isinstance(row["tools"], list) else ""]
            for row in rows
        ],
    )
