"""``vai agent …``: apply, list and validate agent specs (markdown files); run one and watch it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.agents.run_repository import AgentRunRepository
from virtuousai.agents.runs import AgentRunService, read_stream
from virtuousai.agents.service import AgentSpecService
from virtuousai.agents.spec import parse_spec
from virtuousai.cli.common import OrgOption, open_org, run
from virtuousai.cli.output import EXIT_FAILED, JsonListOption, JsonObjectOption, echo_json, parse_pairs, print_table
from virtuousai.config import Settings
from virtuousai.errors import Conflict, VaiError
from virtuousai.store.pagination import MAX_LIMIT, PageRequest
from virtuousai.store.tenant import TenantContext

agent_app = typer.Typer(
    help="Agent specs (markdown with YAML frontmatter), and running one.", no_args_is_help=True, add_completion=False
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


@agent_app.command("run")
def agent_run(
    slug: Annotated[str, typer.Argument(help="The agent's slug (or its id).")],
    question: Annotated[str, typer.Argument(help="What to ask it.")],
    org: OrgOption,
    context: Annotated[list[str] | None, typer.Option("--context", "-c", help="k=v for its context; repeat.")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Stop watching after this long.")] = 3600,
) -> None:
    """Run an agent and watch it live: its narration as it streams, each step, and a y/n prompt for every write
    tool's call it makes. Exits 1 unless the run COMPLETED. A worker (`vai worker`, or `make run`) executes it."""
    extra = parse_pairs(context, "--context")

    async def main() -> str:
        settings = Settings()
        async with open_org(org, settings) as (sessions, tenant):
            async with sessions() as session:
                started = await _agent_runs(session, tenant, sessions, settings).start(slug, question, extra)
            typer.echo(f"started {started.id} ({slug} v{started.spec_version})", err=True)
            return await _watch(sessions, tenant, settings, started.id, timeout_s)

    status = run(main(), words={("body", "input"): "QUESTION", ("body", "context"): "--context"})
    if status != "COMPLETED":
        raise typer.Exit(code=EXIT_FAILED)


async def _watch(
    sessions: async_sessionmaker[AsyncSession], tenant: TenantContext, settings: Settings, run_id: str, timeout_s: float
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seen, narrating = "0", False
    while True:
        async with sessions() as session:
            done, events = await read_stream(AgentRunRepository(session, tenant), run_id, seen)
            await session.rollback()
        for event in events:
            seen = event.id
            if event.kind == "narration":
                typer.echo(event.data.get("text", ""), nl=False)
                narrating = True
                continue
            if narrating:
                typer.echo()
                narrating = False
            line = _describe(event.kind, event.data)
            if line:
                typer.echo(line, err=event.kind not in ("run_completed",))
            if event.kind == "approval_required":
                await _decide(sessions, tenant, settings, run_id, event.data)
        if done or loop.time() > deadline:
            async with sessions() as session:
                final = await AgentRunRepository(session, tenant).get_fresh(run_id)
            return final.status if final is not None else "CANCELLED"
        if not events:
            await asyncio.sleep(0.1)  # the run's rows carry no wake-up to this process: look again shortly


def _describe(kind: str, data: dict[str, Any]) -> str | None:
    what = "model call" if data.get("step_kind") == "model" else f"{data.get('step_kind')} {data.get('tool')}"
    if kind == "step_started" and data.get("step_kind") != "model":
        return f"→ {what} {json.dumps(data.get('args') or {}, ensure_ascii=False)}"
    if kind == "step_completed" and data.get("step_kind") != "model":
        error = data.get("error")
        return f"✗ {what}: {error.get('message')}" if error else f"✓ {what}"
    if kind == "run_completed":
        return None  # its output was narrated
    if kind in ("run_failed", "run_cancelled"):
        return f"{data.get('status')} {data.get('reason')}: {data.get('detail')}"
    return None


async def _decide(
    sessions: async_sessionmaker[AsyncSession],
    tenant: TenantContext,
    settings: Settings,
    run_id: str,
    approval: dict[str, Any],
) -> None:
    args = json.dumps(approval.get("args") or {}, ensure_ascii=False)
    approved = typer.confirm(f"Allow {approval.get('tool')} {args}?", default=False, err=True)
    async with sessions() as session:
        service = _agent_runs(session, tenant, sessions, settings)
        step_id = str(approval["step_id"])
        try:
            if approved:
                await service.approve(run_id, step_id)
            else:
                await service.reject(run_id, step_id, "rejected at the command line")
        except Conflict as exc:  # decided meanwhile (in the API, another terminal)
            typer.echo(f"not decided here: {exc.detail}", err=True)


def _agent_runs(
    session: AsyncSession, tenant: TenantContext, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> AgentRunService:
    """The runs service of this command, with an orchestrator of its own (the command is its own process)."""
    from virtuousai.actions.registry import load_registry  # the whole runtime: only for the commands that run
    from virtuousai.process import build_orchestrator

    registry = load_registry(settings.kind_modules)
    return AgentRunService(session, tenant, build_orchestrator(sessions, registry, settings), registry)
