"""Automation runs as parent runs of the orchestrator (``orchestration/orchestrator.py``): ``load`` a run's state,
``plan`` (``plan.py``, pure), ``apply`` the plan.

``apply`` writes, in the orchestrator's transaction:

1. the run row, guarded by the event counter ``load`` read (``last_event_seq``, the run's version: every change of
   the run or a step appends an event) — another pass that got there first makes this one ``Stale``, and it reads
   again; this is written first, so a losing pass stops before it writes anything else;
2. the steps that moved, and one event per move (run and step events, numbered from that counter);
3. the new ActionRuns, built by the one builder (``runtime/creation.py``), keyed ``<run>:<step>:<item>`` so an item
   is created once whatever happens. A key another run already holds (someone used it through the API) makes the
   pass fail; the next one reads who holds the keys it would use, and its plan fails that step instead.

All of it goes to the database as one statement on PostgreSQL (``write_together``): a chain step's pass is then a
few round trips (BEGIN, two reads, the write, COMMIT), which is what a step costs.

After the commit the orchestrator asks the ActionRuns of the steps that ended early to stop, and advances what the
pass names: the same run when a fan-out has items left to create, the next queued run of the same automation when
this one ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import overrides_of
from virtuousai.automations.plan import (
    AutomationState,
    Children,
    ChildRun,
    Move,
    PinnedTemplate,
    Plan,
    RunInfo,
    plan,
    state_after,
)
from virtuousai.automations.run_repository import AutomationRunRepository, unfinished_runs
from virtuousai.automations.spec import AutomationSpec, CronTrigger, cron_trigger_key
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import AutomationRunEvent
from virtuousai.automations.version import compiled_version
from virtuousai.errors import NotFound
from virtuousai.ids import AUTOMATION_RUN_PREFIX, new_id
from virtuousai.orchestration.orchestrator import Effects
from virtuousai.runtime.creation import Lease, build_runs
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.machine import Stale
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.runtime.transition import Finish
from virtuousai.store.drivers import Rows, Wakeup, driver_for_session
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
        self._suspect: set[str] = set()  # runs whose last pass found an item's idempotency key taken

    async def load(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        run_id: str,
        kept: AutomationState | None,
        finishing: Finish | None = None,
    ) -> Loaded | None:
        runs = AutomationRunRepository(session, tenant)
        # With a kept state, the children of its single-run RUNNING steps come with the run row.
        single = [
            key
            for key, step in (kept.steps.items() if kept else ())
            if step.status is StepStatus.RUNNING and step.item_count is None
        ]
        found = await runs.run_info(run_id, single)
        if found is None or found[0].status.is_terminal:
            return None
        info, version_id, org_settings, read_with_run = found
        if finishing is not None:  # written by the same transaction: seen as it will be
            read_with_run = {
                key: tuple(_as_finished(c, finishing) for c in rows) for key, rows in read_with_run.items()
            }
        if kept is not None and kept.run.last_event_seq == info.last_event_seq:
            # Nothing moved since this process's last pass wrote it (every change appends an event).
            state = replace(kept, run=info, approval_overrides=overrides_of(org_settings), now=utcnow())
        else:
            version = await compiled_version(session, version_id)
            steps = await runs.step_infos(run_id, version.read_outputs_of)
            state = AutomationState(
                run=info,
                version=version,
                steps={step.key: step for step in steps},
                children={},
                approval_overrides=overrides_of(org_settings),
                templates=await self._templates(session, tenant, info, version.spec),
                queued_behind_earlier=await self._queued_behind_earlier(runs, info, version.spec),
                registry=self.registry,
                fan_out_cap=self.fan_out_cap,
                now=utcnow(),
            )
        children: dict[str, Children] = {}
        for step in state.steps.values():
            if step.status is not StepStatus.RUNNING:
                continue
            if step.key in read_with_run and step.item_count is None:
                children[step.key] = runs.single_children(read_with_run[step.key])
            else:
                count_active = state.version.steps[step.key].max_parallel is not None
                children[step.key] = await runs.children(run_id, step, count_active=count_active)
        state = replace(state, children=children)
        if finishing is not None and not any(
            child.id == finishing.run.id for c in children.values() for child in (c.ended or ())
        ):
            # The finishing child is not one this state reads with the run (the kept state was behind): the
            # finish must take the general path, whose pass reads it once it is written.
            raise Stale(f"automation run {run_id}: child {finishing.run.id} is not the one its kept state waits on")
        if run_id in self._suspect:  # a key was found taken: who holds the ones this pass would create?
            self._suspect.discard(run_id)
            keys = [r.idempotency_key or "" for launch in plan(state).launches for r in launch.requests]
            state = replace(state, taken=await runs.holders(keys))
        return Loaded(state, runs)

    def plan(self, loaded: Loaded) -> Plan:
        return plan(loaded.state)

    def after(self, loaded: Loaded, planned: Plan) -> AutomationState | None:
        after = state_after(loaded.state, planned)
        # Only a RUNNING run's state is kept: a PENDING one waits on things outside it (a queued cron run).
        return after if after.run.status is AutomationRunStatus.RUNNING else None

    def sole_child(self, kept: AutomationState | None) -> bool:
        if kept is None:
            return False  # a fan-out's or a DAG's run may wait on many children: only its kept state can tell
        running = [step for step in kept.steps.values() if step.status is StepStatus.RUNNING]
        return len(running) == 1 and running[0].item_count is None and running[0].launched == 1

    async def apply(
        self,
        session: AsyncSession,
        loaded: Loaded,
        planned: Plan,
        lease: Lease | None = None,
        together: tuple[Sequence[Rows], Wakeup] | None = None,
    ) -> Effects:
        if planned.empty and together is None:
            return Effects()
        state, runs = loaded.state, loaded.runs
        run = state.run
        requests = [request for launch in planned.launches for request in launch.requests]
        children = build_runs(
            self.registry,
            requests,
            tenant_id=run.tenant_id,
            approval_overrides=state.approval_overrides,
            lease=lease if len(requests) == 1 else None,
        )
        events = [_event(run, run.last_event_seq + n, move, state.now) for n, move in enumerate(planned.moves, 1)]
        writes = [
            # Even a pass that moves nothing checks the version when it writes something else with it.
            runs.run_update(run.id, seen_seq=run.last_event_seq, values=_run_values(run, planned, state.now)),
            runs.step_updates(_step_rows(state, planned)),
            runs.inserts(AutomationRunEvent, events),
            runs.inserts(ActionRun, children.rows),
            runs.inserts(ActionRunEvent, children.events),
        ]
        wakeups = [children.wakeup] if children.wakeup is not None else []
        if together is not None:
            writes = [*together[0], *writes]
            wakeups.append(together[1])
        try:
            written = await driver_for_session(session).write_together(session, writes, wakeups)
        except IntegrityError:
            # An item's idempotency key is held by a run this automation did not make (someone used the key through
            # the API): the next load reads who holds the keys, and the plan fails the step.
            self._suspect.add(run.id)
            raise Stale(f"automation run {run.id}: an item's idempotency key is taken") from None
        extra = len(together[0]) if together is not None else 0
        if any(count == 0 for count in written[: extra + 1]):
            raise Stale(f"automation run {run.id} (or the child finishing with its pass) moved since it was read")
        effects = Effects(
            cancel=await runs.active_children(run.id, planned.cancel_steps),
            leased=[row for row in children.rows if row["status"] is RunStatus.RUNNING],
        )
        if planned.again:
            effects.advance.append(run.id)
        if planned.run_to is not None and planned.run_to.is_terminal:
            waiting = await runs.oldest_pending(run.automation_id)
            if waiting is not None:
                effects.advance.append(waiting)  # a cron run queued behind this one
        return effects

    async def unfinished(self, session: AsyncSession) -> list[tuple[str, str]]:
        return await unfinished_runs(session)

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


def _as_finished(child: ChildRun, finishing: Finish) -> ChildRun:
    if child.id != finishing.run.id:
        return child
    return replace(
        child, status=finishing.to, attempt=finishing.run.attempt, error=finishing.error, output=finishing.output
    )


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


def _run_values(run: RunInfo, planned: Plan, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"last_event_seq": run.last_event_seq + len(planned.moves), "updated_at": now}
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
