"""Automation runs: start (manual, cron, retry), read with per-step state, list, cancel, retry, events.

Starting a run validates its parameters against the automation's ``parameters`` schema (422 with field paths),
pins the current version, creates one step row per step, commits, and has the process's orchestrator advance it.
Cancelling records the request and advances the run, whose plan ends it (``plan.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.automations.graph import build_graph
from virtuousai.automations.run_repository import AutomationRunRepository
from virtuousai.automations.service import AutomationService, AutomationWithVersion
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import AutomationRun, AutomationRunEvent, AutomationStepRun
from virtuousai.automations.validation import raise_for_params
from virtuousai.errors import Conflict, NotFound
from virtuousai.ids import AUTOMATION_RUN_PREFIX, new_id
from virtuousai.orchestration.orchestrator import Orchestrator
from virtuousai.runtime.tables import ActionRun
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow


@dataclass(frozen=True)
class RunDetail:
    run: AutomationRun
    steps: Sequence[AutomationStepRun]
    action_runs: dict[str, list[ActionRun]]


def stage_run(
    session: AsyncSession,
    found: AutomationWithVersion,
    params: dict[str, Any],
    *,
    trigger: str,
    created_by: str | None,
    trigger_key: str | None = None,
    tick: datetime | None = None,
    retry_of: AutomationRun | None = None,
    reused: dict[str, AutomationStepRun] | None = None,
    template_snapshot: dict[str, Any] | None = None,
) -> AutomationRun:
    """Stage a PENDING run of ``found``'s version and its step rows (completed ones copied from ``reused``)."""
    now = utcnow()
    run = AutomationRun(
        id=new_id(AUTOMATION_RUN_PREFIX),
        tenant_id=found.automation.tenant_id,
        automation_id=found.automation.id,
        version_id=found.version.id,
        version=found.version.version,
        status=AutomationRunStatus.PENDING,
        params=params,
        trigger=trigger,
        trigger_key=trigger_key,
        tick=tick,
        retry_of=None if retry_of is None else retry_of.id,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        last_event_seq=1,
        template_snapshot=template_snapshot,
    )
    session.add(run)
    session.add(
        AutomationRunEvent(
            id=new_id("aevt"),
            tenant_id=run.tenant_id,
            automation_run_id=run.id,
            seq=1,
            kind="run",
            data={"from": None, "to": "PENDING", "trigger": trigger},
            created_at=now,
        )
    )
    for position, key in enumerate(build_graph(found.spec).order):
        previous = (reused or {}).get(key)
        keep = previous is not None and previous.status is StepStatus.COMPLETED
        session.add(
            AutomationStepRun(
                id=new_id("astep"),
                tenant_id=run.tenant_id,
                automation_run_id=run.id,
                step_key=key,
                position=position,
                status=StepStatus.COMPLETED if keep else StepStatus.PENDING,
                output=previous.output if keep and previous else None,
                item_count=previous.item_count if keep and previous else None,
                attempts=0,
                reused_from=retry_of.id if keep and retry_of else None,
                started_at=now if keep else None,
                finished_at=now if keep else None,
            )
        )
    return run


class AutomationRunService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, orchestrator: Orchestrator) -> None:
        self.session = session
        self.tenant = tenant
        self.orchestrator = orchestrator
        self.runs = AutomationRunRepository(session, tenant)

    async def start(self, ref: str, params: dict[str, Any]) -> AutomationRun:
        found = await AutomationService(self.session, self.tenant).get(ref)
        return await self.start_version(found, params, trigger="manual")

    async def start_version(
        self,
        found: AutomationWithVersion,
        params: dict[str, Any],
        *,
        trigger: str,
        template_snapshot: dict[str, Any] | None = None,
    ) -> AutomationRun:
        """Check ``params``, stage a run of ``found``'s version, commit, and advance it."""
        raise_for_params(found.spec.parameters, params)
        run = stage_run(
            self.session,
            found,
            params,
            trigger=trigger,
            created_by=self.tenant.user_id,
            template_snapshot=template_snapshot,
        )
        await self.session.commit()
        await self.orchestrator.advance(self.tenant.tenant_id, run.id)
        return await self.get(run.id)

    async def get(self, run_id: str) -> AutomationRun:
        run = await self.runs.get_fresh(run_id)
        if run is None:
            raise NotFound(f"automation run {run_id} not found")
        return run

    async def detail(self, run_id: str) -> RunDetail:
        run = await self.get(run_id)
        return RunDetail(run, await self.runs.steps(run.id), await self.runs.action_runs_by_step(run.id))

    async def list(
        self, page: PageRequest, *, automation_ref: str | None = None, status: AutomationRunStatus | None = None
    ) -> PageResult[AutomationRun]:
        automation_id = None
        if automation_ref is not None:
            automation_id = (await AutomationService(self.session, self.tenant).get(automation_ref)).automation.id
        return await self.runs.list_runs(page, automation_id=automation_id, status=status)

    async def step_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        return await self.runs.step_counts(run_ids)

    async def cancel(self, run_id: str) -> AutomationRun:
        """CANCELLED at once (the advance that follows the request ends it); open steps are CANCELLED and their
        ActionRuns asked to stop. A run that finished otherwise: 409."""
        run = await self.get(run_id)
        if run.status is AutomationRunStatus.CANCELLED:
            return run
        if run.status.is_terminal:
            raise Conflict(f"automation run {run_id} already finished ({run.status.value})")
        await self.session.execute(
            sa.update(AutomationRun)
            .where(AutomationRun.tenant_id == self.tenant.tenant_id, AutomationRun.id == run_id)
            .where(AutomationRun.cancel_requested_at.is_(None))
            .values(cancel_requested_at=utcnow())
        )
        await self.session.commit()
        await self.orchestrator.advance(self.tenant.tenant_id, run_id)
        run = await self.get(run_id)
        if run.status is not AutomationRunStatus.CANCELLED:
            raise Conflict(f"automation run {run_id} finished ({run.status.value}) before it could be cancelled")
        return run

    async def retry(self, run_id: str) -> AutomationRun:
        """A new run of the same version and parameters that reuses every COMPLETED step's output and runs the
        rest: the failed steps, the ones skipped or cancelled because of them."""
        previous = await self.get(run_id)
        if not previous.status.is_terminal:
            raise Conflict(f"automation run {run_id} is still {previous.status.value}; cancel it first")
        steps = {row.step_key: row for row in await self.runs.steps(previous.id)}
        if all(row.status is StepStatus.COMPLETED for row in steps.values()):
            raise Conflict(f"automation run {run_id}: every step completed; nothing to retry")
        service = AutomationService(self.session, self.tenant)
        automation = await service.automations.get(previous.automation_id)
        version = await service.versions.get(previous.version_id)
        if automation is None or version is None:
            raise NotFound(f"the automation of run {run_id} no longer exists")
        found = AutomationWithVersion(automation, version)
        run = stage_run(
            self.session,
            found,
            previous.params,
            trigger="retry",
            created_by=self.tenant.user_id,
            retry_of=previous,
            reused=steps,
        )
        await self.session.commit()
        await self.orchestrator.advance(self.tenant.tenant_id, run.id)
        return await self.get(run.id)

    async def events_after(self, run_id: str, after_seq: int) -> Sequence[AutomationRunEvent]:
        return await self.runs.events_after(run_id, after_seq)
