"""Automation runs as parent runs of the orchestrator (``orchestration/orchestrator.py``): ``load`` a run's state,
``plan`` (``plan.py``, pure), ``apply`` the plan.

``apply`` writes, in the orchestrator's transaction:

1. the run row, guarded by the event counter ``load`` read (``last_event_seq``, the run's version: every change of
   the run or a step appends an event) — another pass that got there first makes this one ``Stale``, and it reads
   again; this is written first, so a losing pass stops before it writes anything else;
2. the steps that moved, and one event per move (run and step events, numbered from that counter);
3. the new ActionRuns, through the one builder (``runtime/creation.py``), keyed ``<run>:<step>:<item>`` so an item
   is created once whatever happens; a key another run already holds fails that step instead (and asks for one
   more pass, which acts on the failure).

After the commit the orchestrator asks the ActionRuns of the steps that ended early to stop, and advances what the
pass names: the same run when a fan-out has items left to create, the next queued run of the same automation when
this one ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import overrides_of
from virtuousai.automations.plan import (
    AutomationState,
    Children,
    Move,
    PinnedTemplate,
    Plan,
    RunInfo,
    item_index,
    plan,
)
from virtuousai.automations.run_repository import AutomationRunRepository, unfinished_runs
from virtuousai.automations.spec import AutomationSpec, CronTrigger, cron_trigger_key
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import AutomationRun
from virtuousai.automations.version import compiled_version
from virtuousai.errors import NotFound
from virtuousai.ids import AUTOMATION_RUN_PREFIX, new_id
from virtuousai.orchestration.orchestrator import Effects
from virtuousai.runtime.creation import create_runs
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.service import TemplateService
from virtuousai.timeutil import utcnow


@dataclass(frozen=True)
class Loaded:
    """A run's state, and what ``apply`` needs besides (the repository of the pass's session)."""

    state: AutomationState
    runs: AutomationRunRepository


class AutomationRuns:
    """The ``ParentRuns`` of automation runs."""

    prefix = AUTOMATION_RUN_PREFIX

    def __init__(self, registry: KindRegistry, *, fan_out_cap: int) -> None:
        self.registry = registry
        self.fan_out_cap = fan_out_cap

    async def load(self, session: AsyncSession, tenant: TenantContext, run_id: str) -> Loaded | None:
        runs = AutomationRunRepository(session, tenant)
        found = await runs.run_info(run_id)
        if found is None or found[0].status.is_terminal:
            return None
        info, row, org_settings = found
        version = await compiled_version(session, row.version_id)
        steps = await runs.step_infos(run_id, version.read_outputs_of)
        children: dict[str, Children] = {}
        for step in steps:
            if step.status is StepStatus.RUNNING:
                count_active = version.steps[step.key].max_parallel is not None
                children[step.key] = await runs.children(run_id, step, count_active=count_active)
        state = AutomationState(
            run=info,
            version=version,
            steps={step.key: step for step in steps},
            children=children,
            approval_overrides=overrides_of(org_settings),
            templates=await self._templates(session, tenant, info, version.spec),
            queued_behind_earlier=await self._queued_behind_earlier(runs, info, version.spec),
            registry=self.registry,
            fan_out_cap=self.fan_out_cap,
            now=utcnow(),
        )
        return Loaded(state, runs)

    def plan(self, loaded: Loaded) -> Plan:
        return plan(loaded.state)

    async def apply(self, session: AsyncSession, loaded: Loaded, planned: Plan) -> Effects:
        if planned.empty:
            return Effects()
        state, runs = loaded.state, loaded.runs
        run = state.run
        if await self._create_children(session, state, planned):
            planned.again = True  # a step failed on a taken key: the next pass acts on that
        events = [_event(run, run.last_event_seq + n, move, state.now) for n, move in enumerate(planned.moves, 1)]
        # The guard first: a pass that lost the race to another stops here, having written nothing that stays.
        await runs.write_run(run.id, seen_seq=run.last_event_seq, values=_run_values(planned, len(events), state.now))
        await runs.write_steps(_step_rows(state, planned))
        await runs.add_events(events)
        effects = Effects(cancel=await runs.active_children(run.id, planned.cancel_steps))
        if planned.again:
            effects.advance.append(run.id)
        if planned.run_to is not None and planned.run_to.is_terminal:
            waiting = await runs.oldest_pending(run.automation_id)
            if waiting is not None:
                effects.advance.append(waiting)  # a cron run queued behind this one
        return effects

    async def unfinished(self, session: AsyncSession) -> list[tuple[str, str]]:
        return await unfinished_runs(session)

    # -- creating the children -----------------------------------------------------------------------------------

    async def _create_children(self, session: AsyncSession, state: AutomationState, planned: Plan) -> bool:
        """Create the plan's ActionRuns. A step with an item whose key is held by a run the automation did not make
        (someone used the same key through the API) fails instead, and the items created with it are stopped.
        Returns whether that happened."""
        requests = [request for launch in planned.launches for request in launch.requests]
        created = await create_runs(
            session, self.registry, requests, tenant_id=state.run.tenant_id, approval_overrides=state.approval_overrides
        )
        if not created.taken:
            return False
        holders = await AutomationRunRepository(session, TenantContext(tenant_id=state.run.tenant_id)).holders(
            [request.idempotency_key or "" for request in created.taken]
        )
        for request in created.taken:
            step_key, key = request.step_key or "", request.idempotency_key or ""
            if step_key in planned.cancel_steps:
                continue  # another of its items was taken too
            index = item_index(key)
            message = f"idempotency key {key!r} of item {index} is held by run {holders.get(key, '?')}"
            error = {"type": "IdempotencyConflict", "message": message, "item": index}
            planned.cancel_steps.append(step_key)
            planned.launches[:] = [launch for launch in planned.launches if launch.step_key != step_key]
            started = next((m for m in planned.moves if m.step == step_key and m.to is StepStatus.RUNNING), None)
            if started is not None:  # started in this pass: it fails instead
                at = planned.moves.index(started)
                planned.moves[at] = Move(
                    step_key, started.before, StepStatus.FAILED, {**started.values, "error": error}
                )
            else:
                planned.moves.append(Move(step_key, StepStatus.RUNNING.value, StepStatus.FAILED, {"error": error}))
        return True

    # -- what load reads besides the rows ------------------------------------------------------------------------

    async def _templates(
        self, session: AsyncSession, tenant: TenantContext, run: RunInfo, spec: AutomationSpec
    ) -> dict[str, PinnedTemplate]:
        """The versions of the templates the run's steps name: pinned when the run started, or — for a run about to
        start — each template's current version (deleted ones are left out: their step fails when it starts)."""
        refs = sorted({step.template for step in spec.steps if step.template is not None})
        if not refs:
            return {}
        templates = TemplateService(session, tenant, self.registry)
        found: dict[str, PinnedTemplate] = {}
        for ref in refs:
            pin = (run.template_pins or {}).get(ref) if run.status is AutomationRunStatus.RUNNING else None
            try:
                if run.status is AutomationRunStatus.RUNNING:
                    if pin is None:
                        continue
                    template = await templates.get_by_ref(pin["template_id"])
                    version = await templates.version_of(template, pin["version"])
                else:
                    template = await templates.get_by_ref(ref)
                    version = await templates.version_of(template)
            except NotFound:
                continue
            found[ref] = PinnedTemplate(template, version)
        return found

    @staticmethod
    async def _queued_behind_earlier(runs: AutomationRunRepository, run: RunInfo, spec: AutomationSpec) -> bool:
        """A cron run with ``overlap: queue`` waits while an earlier run of the same trigger is still going."""
        if run.status is not AutomationRunStatus.PENDING or run.trigger != "cron" or run.trigger_key is None:
            return False
        policies = {
            cron_trigger_key(t, i): t.overlap for i, t in enumerate(spec.triggers) if isinstance(t, CronTrigger)
        }
        if policies.get(run.trigger_key) != "queue":
            return False
        return await runs.earlier_active(run)


# -- rows ----------------------------------------------------------------------------------------------------------

# Events carry the why (error, reason) and a fan-out's size, not the outputs, which can be large: GET the run.
_PUBLIC = ("error", "reason", "item_count")


def _event(run: RunInfo, seq: int, move: Move, now: datetime) -> dict[str, Any]:
    data = {"from": move.before, "to": move.to.value, **{k: v for k, v in move.values.items() if k in _PUBLIC}}
    return {
        "id": new_id("aevt"),
        "tenant_id": run.tenant_id,
        "automation_run_id": run.id,
        "seq": seq,
        "kind": "run" if move.step is None else "step",
        "data": data if move.step is None else {"step": move.step, **data},
        "created_at": now,
    }


def _run_values(planned: Plan, event_count: int, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"last_event_seq": AutomationRun.last_event_seq + event_count, "updated_at": now}
    for move in planned.moves:
        if move.step is not None:
            continue
        values["status"] = move.to
        values |= {k: v for k, v in move.values.items() if k in ("error", "template_pins", "started_at")}
        if AutomationRunStatus(move.to).is_terminal:
            values["finished_at"] = now
    return values


def _step_rows(state: AutomationState, planned: Plan) -> list[dict[str, Any]]:
    """The final columns of every step the pass moved or launched items of (one executemany, same columns)."""
    now = state.now
    rows: dict[str, dict[str, Any]] = {}

    def row(key: str) -> dict[str, Any]:
        if key not in rows:
            step = state.steps[key]
            rows[key] = {
                "id": step.id,
                "status": step.status,
                "item_count": step.item_count,
                "launched": step.launched,
                "output": step.output,
                "error": step.error,
                "reason": None,
                "attempts": 0,
                "started_at": step.started_at,
                "finished_at": None,
            }
        return rows[key]

    for move in planned.moves:
        if move.step is None:
            continue
        changed = row(move.step)
        changed["status"] = move.to
        changed |= {
            k: v for k, v in move.values.items() if k in ("item_count", "output", "error", "reason", "attempts")
        }
        if move.to is StepStatus.RUNNING:
            changed["started_at"] = now
        elif StepStatus(move.to).is_terminal:
            changed["finished_at"] = now
            changed["started_at"] = changed["started_at"] or now
    for launch in planned.launches:
        row(launch.step_key)["launched"] = launch.first + len(launch.requests)
    return list(rows.values())
