"""``vai automation …``: apply a spec file, start a run (and follow it live), list runs.

These commands talk to the database directly (like ``vai org``), so they need the same ``VAI_DATABASE_URL`` as the
server and an ``--org``. A run's steps are executed by the workers of ``vai serve`` / ``vai worker``; ``--follow``
only watches the run's rows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.automations.runs import AutomationRunService, RunDetail
from virtuousai.automations.service import AutomationService
from virtuousai.automations.spec import AutomationSpec
from virtuousai.cli.common import OrgOption, open_org, run
from virtuousai.cli.follow import unclaimed_notice
from virtuousai.cli.output import (
    EXIT_FAILED,
    JsonListOption,
    JsonObjectOption,
    Words,
    echo_json,
    parse_pairs,
    print_table,
)
from virtuousai.config import Settings
from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.runtime.states import RunStatus
from virtuousai.store.pagination import PageRequest
from virtuousai.store.tenant import TenantContext

automation_app = typer.Typer(help="Automations: DAG workflows of actions.", no_args_is_help=True, add_completion=False)
STATUS_STYLE = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow", "SKIPPED": "dim", "RUNNING": "cyan"}
# `automation run` checks its --param values against the automation's parameters (errors at body.params.<name>).
PARAM_WORDS: Words = {("body", "params"): "--param"}


def load_spec(path: Path) -> AutomationSpec:
    """A spec from a YAML or JSON file (JSON is YAML); shape errors become a ``ValidationFailed`` with paths."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationFailed.at(["file"], f"cannot read {path}: {exc}") from None
    try:
        return AutomationSpec.model_validate(document)
    except ValidationError as exc:
        errors = [FieldError(["file", *e["loc"]], e["msg"], e["type"]) for e in exc.errors()]
        raise ValidationFailed(f"{path} is not a valid automation spec", errors=errors) from None


@automation_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON spec.")],
    org: OrgOption,
    as_json: JsonObjectOption = False,
) -> None:
    """Create the automation with the spec's slug, or add a version (an identical spec changes nothing)."""

    async def main() -> None:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            applied = await AutomationService(session, tenant).apply(load_spec(file), loc=("file",))
        automation, version = applied.result.automation, applied.result.version
        if as_json:
            echo_json(
                {"id": automation.id, "slug": automation.slug, "version": version.version, "outcome": applied.outcome}
            )
        else:
            typer.echo(f"{applied.outcome}: {automation.slug} ({automation.id}) version {version.version}")

    run(main())


@automation_app.command("run")
def run_automation(
    slug: Annotated[str, typer.Argument(help="The automation's slug (or its id).")],
    org: OrgOption,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="k=v; repeat for more.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show live per-step progress until it ends.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="With --follow: stop watching after this long.")] = 3600,
) -> None:
    """Start a run of the current version; with --follow, watch its steps live (exit 1 unless it COMPLETED)."""
    params = parse_pairs(param, "--param")

    async def main() -> str:
        settings = Settings()
        ref = slug if slug.startswith(("aut_", "slug:")) else f"slug:{slug}"
        async with open_org(org, settings) as (sessions, tenant):
            async with sessions() as session:
                started = await _runs(session, tenant, sessions).start(ref, params)
            typer.echo(f"started {started.id}")
            if not follow:
                return "COMPLETED"
            return await _follow(sessions, tenant, started.id, timeout_s, settings.follow_notice_s)

    status = run(main(), words=PARAM_WORDS)
    if follow and status != "COMPLETED":
        raise typer.Exit(code=EXIT_FAILED)


def _claimed(detail: RunDetail) -> bool:
    """Has a worker taken any of the run's actions yet (or is there nothing for one to take)?"""
    action_runs = [ar for ars in detail.action_runs.values() for ar in ars]
    return not action_runs or any(ar.status is not RunStatus.PENDING or ar.started_at for ar in action_runs)


async def _follow(
    sessions: async_sessionmaker[AsyncSession], tenant: TenantContext, run_id: str, timeout_s: float, notice_s: float
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with unclaimed_notice(run_id, notice_s) as claimed:
        with Live(console=Console(), refresh_per_second=8) as live:
            while True:
                async with sessions() as session:
                    detail = await _runs(session, tenant, sessions).detail(run_id)
                if _claimed(detail):
                    claimed.set()
                live.update(_table(detail))
                if detail.run.status.is_terminal or loop.time() > deadline:
                    return detail.run.status.value
                await asyncio.sleep(0.25)  # the rows carry no wake-up for this process: look again shortly


def _runs(session: Any, tenant: TenantContext, sessions: Any) -> AutomationRunService:
    """The runs service of this command, with an orchestrator of its own (the command is its own process)."""
    from virtuousai.actions.registry import load_registry
    from virtuousai.process import build_orchestrator

    settings = Settings()
    return AutomationRunService(
        session, tenant, build_orchestrator(sessions, load_registry(settings.kind_modules), settings)
    )


def _table(detail: RunDetail) -> Table:
    run = detail.run
    table = Table(title=f"{run.id} · {run.status.value}", title_style=STATUS_STYLE.get(run.status.value, ""))
    for column in ("step", "status", "items", "attempts", "seconds", "note"):
        table.add_column(column)
    for step in detail.steps:
        done = sum(ar.status.is_terminal for ar in detail.action_runs.get(step.step_key, []))
        items = "" if step.item_count is None else f"{done}/{step.item_count}"
        seconds = ""
        if step.started_at and step.finished_at:
            seconds = f"{(step.finished_at - step.started_at).total_seconds():.2f}"
        note = step.reason or (str((step.error or {}).get("message", "")) if step.error else "")
        style = STATUS_STYLE.get(step.status.value, "")
        table.add_row(
            step.step_key,
            f"[{style}]{step.status.value}[/]" if style else step.status.value,
            items,
            str(step.attempts),
            seconds,
            note[:80],
        )
    return table


@automation_app.command("runs")
def list_runs(
    org: OrgOption,
    automation: Annotated[str | None, typer.Option("--automation", help="Only this automation (slug or id).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    as_json: JsonListOption = False,
) -> None:
    """Recent runs, newest first."""

    async def main() -> None:
        ref = (
            None
            if automation is None
            else (automation if automation.startswith(("aut_", "slug:")) else f"slug:{automation}")
        )
        async with open_org(org) as (sessions, tenant), sessions() as session:
            page = await _runs(session, tenant, sessions).list(PageRequest(limit=limit), automation_ref=ref)
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "automation_id": r.automation_id,
                "version": r.version,
                "status": r.status.value,
                "trigger": r.trigger,
                "created_at": r.created_at,
            }
            for r in page.items
        ]
        if as_json:
            echo_json(rows)
            return
        columns = ("id", "automation_id", "version", "status", "trigger", "created_at")
        print_table(
            ("id", "automation", "version", "status", "trigger", "created"), [[row[c] for c in columns] for row in rows]
        )

    run(main())
