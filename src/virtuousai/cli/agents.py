"""``vai agent …``: apply, list and validate agent specs (markdown files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from virtuousai import eventloop
from virtuousai.agents.service import AgentSpecService
from virtuousai.agents.spec import parse_spec
from virtuousai.cli.common import echo_json, open_sessions
from virtuousai.config import Settings
from virtuousai.errors import NotFound, VaiError
from virtuousai.orgs.repository import AccessLookup
from virtuousai.store.pagination import MAX_LIMIT, PageRequest
from virtuousai.store.tenant import TenantContext

agent_app = typer.Typer(
    help="Agent specs (markdown with YAML frontmatter).", no_args_is_help=True, add_completion=False
)

OrgOption = Annotated[str, typer.Option("--org", help="Organization id.")]
FileArgument = Annotated[Path, typer.Argument(help="The spec, e.g. examples/agents/data-analyst.md.", exists=True)]
MARKDOWN_LOC_LENGTH = 2  # errors' loc starts with ["body", "markdown"]


def print_errors(path: Path, exc: VaiError) -> None:
    """``FILE:LINE: field.path: message`` per error (the compiler convention, so editors can jump to it)."""
    if not exc.errors:
        typer.echo(f"{path}: {exc.detail}", err=True)
    for error in exc.errors:
        field = ".".join(str(part) for part in error["loc"][MARKDOWN_LOC_LENGTH:]) or "document"
        where = f"{path}:{error['line']}" if "line" in error else str(path)
        typer.echo(f"{where}: {field}: {error['msg']}", err=True)
    raise typer.Exit(code=1)


async def _check_org(org: str) -> TenantContext:
    async with open_sessions(Settings()) as sessions, sessions() as session:
        if await AccessLookup(session).organization(org) is None:
            raise NotFound(f"no organization {org}")
    return TenantContext(tenant_id=org)


@agent_app.command("validate")
def agent_validate(
    path: FileArgument,
    org: Annotated[str | None, typer.Option("--org", help="Also check against this organization.")] = None,
) -> None:
    """Check a spec; prints each error with its line and exits non-zero if there are any."""
    markdown = path.read_text(encoding="utf-8")

    async def run() -> None:
        tenant = await _check_org(org) if org else None
        if tenant is None:
            parse_spec(markdown)
            return
        async with open_sessions(Settings()) as sessions, sessions() as session:
            service = AgentSpecService(session, tenant)
            document = parse_spec(markdown)
            existing = await service.specs.get_live_by_slug(document.slug)
            await service.validate(markdown, updating=existing)

    try:
        eventloop.run(run())
    except VaiError as exc:
        print_errors(path, exc)
    typer.echo(f"{path}: ok")


@agent_app.command("apply")
def agent_apply(path: FileArgument, org: OrgOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create the agent, or add a new version if its slug exists in the organization."""
    markdown = path.read_text(encoding="utf-8")

    async def run() -> tuple[str, str, int]:
        tenant = await _check_org(org)
        async with open_sessions(Settings()) as sessions, sessions() as session:
            service = AgentSpecService(session, tenant)
            existing = await service.specs.get_live_by_slug(parse_spec(markdown).slug)
            if existing is None:
                found = await service.create(markdown)
            else:
                found = await service.update(existing.id, markdown)
            return found.spec.id, found.spec.slug, found.version.version

    try:
        spec_id, slug, version = eventloop.run(run())
    except VaiError as exc:
        print_errors(path, exc)
    if as_json:
        echo_json({"id": spec_id, "slug": slug, "version": version})
    else:
        typer.echo(f"{slug}: {spec_id} version {version}")


@agent_app.command("list")
def agent_list(org: OrgOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The organization's agents at their current versions."""

    async def run() -> list[dict[str, object]]:
        tenant = await _check_org(org)
        async with open_sessions(Settings()) as sessions, sessions() as session:
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

    try:
        rows = eventloop.run(run())
    except VaiError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        echo_json(rows)
        return
    table = Table("id", "slug", "name", "mode", "version", "model", "tools")
    for row in rows:
        tools = row["tools"]
        table.add_row(
            *(str(row[c] or "") for c in ("id", "slug", "name", "mode", "version", "model")),
            ", ".join(map(str, tools)) if isinstance(tools, list) else "",
        )
    Console().print(table)
