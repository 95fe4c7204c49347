"""``AutomationEngine``: moves automation runs forward. Steps become ActionRuns as soon as their dependencies allow.

The engine is driven by events, not by a loop per step: ``advance(run)`` is called when a run is created, when one
of its ActionRuns finishes (the runtime's ``on_run_finished`` hook), on cancel, and by a slow sweep at startup and
on a timer (wake-ups are hints; the sweep makes a lost one cost a delay, never a stuck run).

One ``advance`` is one transaction that holds the automation run's row lock (``FOR UPDATE`` on PostgreSQL; SQLite
has one writer at a time), reads every step and the ActionRuns of the running ones, and writes what follows:
SKIPPED steps, new ActionRuns, finished steps, the run's own end — and commits once. Each ActionRun carries the
idempotency key ``<automation_run_id>:<step_key>:<item index>`` (unique per organization), so a step is created
once even if two processes evaluate the same run at the same moment; and because the ActionRuns are created in the
same transaction as the step's state, a crash loses nothing: whatever committed is found again by the next
``advance``. ``passes.py`` holds what a pass works with; ``step_runs.py`` creates the ActionRuns.

In a process that executes ActionRuns (``background.py`` gives the engine a ``LocalHandoff``), a pass creates a
new ActionRun already RUNNING under a local worker's lease when that worker has a free slot, the run needs no
approval and its organization is under its concurrency limit, and hands it to the worker after the commit
(``runtime/handoff.py``): the next step of a chain starts without a wake-up or a claim. Otherwise it is PENDING.

A pass leaves what it read and decided in this process's ``StepCache``, versioned by the run's event counter; the
next pass of the run reads the steps again only if the counter moved. And when that next pass is triggered by the
outcome of the run's only active ActionRun, executed here, ``finish_and_advance`` records the outcome and takes
the pass in one transaction, with no reads but a lock that checks the counter: a chain's step costs one
transaction. Whatever it cannot be sure of (the run moved, another ActionRun is active, a lost lease) goes the
general way: the outcome alone, then the hook's full pass.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.actions.policy import overrides_of
from virtuousai.actions.registry import KindRegistry, default_registry
from virtuousai.actions.service import ActionRunService
from virtuousai.automations.expressions import ExpressionError, evaluate_condition, evaluate_template, render_value
from virtuousai.automations.passes import (
    ACTIVE_ACTION_STATUSES,
    KeptRun,
    Pass,
    RunEvents,
    StepCache,
    compiled_version,
    end_open_steps,
    move_run,
    move_step,
)
from virtuousai.automations.repository import AutomationRunRepository, EngineLookup, StepActionRun, StepState
from virtuousai.automations.spec import AutomationSpec, CronTrigger, Step, cron_trigger_key
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.step_runs import (
    NewStepRun,
    StepRunRequest,
    first_events,
    insert_step_runs,
    key_holders,
    leased_to,
    new_step_run,
    publish_enqueued,
)
from virtuousai.automations.tables import AutomationRun
from virtuousai.errors import Conflict, NotFound, ValidationFailed
from virtuousai.runtime.handoff import LocalHandoff
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.transition import Finish, finish_runs
from virtuousai.runtime.worker import Worker
from virtuousai.store.drivers import claimed_from_mapping
from virtuousai.store.engine import transaction
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.service import TemplateService
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


def idempotency_key(automation_run_id: str, step_key: str, index: int) -> str:
    return f"{automation_run_id}:{step_key}:{index}"


_ADVANCED_MAX = 10_000


def item_index(key: str | None) -> int:
    return int((key or "").rsplit(":", 1)[-1])


def _finished(action_run: StepActionRun, finish: Finish) -> StepActionRun:
    """``action_run`` as ``finish`` leaves it (what the pass would read back)."""
    return replace(action_run, status=finish.to, attempt=finish.run.attempt, error=finish.error, output=finish.output)


class AutomationEngine:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: KindRegistry | None = None,
        handoff: LocalHandoff | None = None,
    ) -> None:
        self.sessions = sessions
        self.registry = registry or default_registry()
        self.handoff = handoff
        # Runs with a pass going in this process → whether another pass was asked for meanwhile.
        self._passes: dict[str, bool] = {}
        self._kept = StepCache()
        # ActionRuns whose finish ``finish_and_advance`` took the pass for, until their hook call comes (bounded: a
        # wake-up that never comes must not grow it; a forgotten one costs its hook a pass that finds nothing to do).
        self._advanced: OrderedDict[str, None] = OrderedDict()
        self.fused_passes = 0  # passes taken with the outcome that triggered them (observability, tests)
        self.steps_evaluated = 0  # steps the passes looked at: O(steps) over a whole run, not per pass (tests)

    async def advance(self, tenant_id: str, run_id: str) -> AutomationRunStatus | None:
        """Evaluate the run once and act on everything that is ready; returns its status after the pass."""
        reserved: list[Worker] = []
        adopted: list[tuple[Worker, NewStepRun]] = []
        try:
            return await self._advance(tenant_id, run_id, reserved, adopted)
        finally:
            for worker in reserved:  # not used, or the pass rolled back (its RUNNING runs never existed)
                worker.release_slot()

    async def _advance(
        self,
        tenant_id: str,
        run_id: str,
        reserved: list[Worker],
        adopted: list[tuple[Worker, NewStepRun]],
    ) -> AutomationRunStatus | None:
        tenant = TenantContext(tenant_id=tenant_id)
        async with transaction(self.sessions) as session:
            runs = AutomationRunRepository(session, tenant)
            locked = await runs.lock_for_pass(run_id)
            if locked is None or locked.run.status.is_terminal:
                self._kept.forget(run_id)
                return None if locked is None else locked.run.status
            run = locked.run
            version = await compiled_version(session, run.version_id)
            kept = self._kept.take(run.id, run.last_event_seq)
            events: RunEvents = []
            if run.status is AutomationRunStatus.PENDING:
                if await self._queued_behind_another(runs, run, version.spec):
                    return run.status
                move_run(events, run, AutomationRunStatus.RUNNING)
                run.template_pins = await self._pin_templates(session, tenant, version.spec) or None
            if kept is not None:
                steps = kept.steps
            else:
                steps = {row.step_key: row for row in await runs.step_states(run.id, version.read_outputs_of)}
            state = Pass(
                session=session,
                run=run,
                version=version,
                steps=steps,
                action_runs=await runs.step_action_runs(run.id, list(steps.values())),
                approval_overrides=overrides_of(locked.org_settings),
                events=events,
                reserved=reserved,
                adopted=adopted,
                org_running=locked.org_running,
            )
            await self._evaluate(state, tenant, settled=kept is not None)
            await self._write(state, runs)
        return await self._after_commit(state, tenant)

    async def _write(self, state: Pass, runs: AutomationRunRepository) -> None:
        await runs.write_pass(state.run, state.changed_steps(), state.events, state.first_events)
        if state.enqueued:
            await publish_enqueued(state.session, state.enqueued[0].id)

    async def _after_commit(self, state: Pass, tenant: TenantContext) -> AutomationRunStatus:
        """The pass committed: hand its RUNNING ActionRuns to their workers, keep its state for the next pass, ask
        the runs of ended steps to stop, and start the next queued run once this one is over."""
        for worker, new_run in state.adopted:
            state.reserved.remove(worker)
            worker.adopt(claimed_from_mapping(new_run.row))
        run = state.run
        if run.status.is_terminal:
            self._kept.forget(run.id)
        else:
            self._kept.keep(state)
        await self.cancel_action_runs(tenant, state.to_cancel)
        if run.status.is_terminal:
            await self._start_queued(tenant, run.automation_id)
        return run.status

    # -- an outcome and its pass in one transaction ---------------------------------------------------------------

    async def finish_and_advance(self, finish: Finish, publisher: str) -> bool | None:
        """Record a step's outcome and take the pass it triggers in one transaction; ``None`` when this cannot be
        done here (the caller records the outcome alone, and the ``on_run_finished`` hook takes the pass).

        The worker that executed the run offers each automation outcome (``OutcomeRecorder.fused`` calls
        ``fuse``). It applies when this process took the run's last pass (``StepCache``), that pass left this
        ActionRun as the run's only active one, and the run is still at the event counter that pass left: then
        nothing but this outcome can have changed, so the pass needs no reads — one statement records the
        outcome, one locks the run if it is still at that counter. A chain's step costs one transaction instead of
        two, and no hook. Returns whether the outcome was recorded (``False``: the lease was lost; nothing was
        written)."""
        fused = self.fuse(finish, publisher)
        return None if fused is None else await fused

    def fuse(self, finish: Finish, publisher: str) -> Coroutine[Any, Any, bool | None] | None:
        """``finish_and_advance``'s checks, made at once and without I/O (every outcome of a 1,000-item fan-out
        is offered): ``None`` if it does not apply, else the coroutine that does it — to be awaited."""
        ran = finish.run
        run_id = ran.automation_run_id
        if self.handoff is None or not run_id or not finish.to.is_terminal or run_id in self._passes:
            return None
        kept = self._kept.peek(run_id)
        if kept is None or kept.sole_active != ran.id or kept.run.tenant_id != ran.tenant_id:
            return None
        self._kept.forget(run_id)  # from here the pass owns it; its commit keeps it again
        self._passes[run_id] = False  # hooks for this run meanwhile ask for one more pass (advance_coalesced)
        return self._fused(finish, publisher, kept)

    async def _fused(self, finish: Finish, publisher: str, kept: KeptRun) -> bool | None:
        ran, run_id = finish.run, kept.run.id
        reserved: list[Worker] = []
        try:
            recorded = await self._finish_and_pass(finish, publisher, kept, reserved)
        except Exception:
            message = "automation run %s: outcome and pass together failed; recording the outcome alone"
            log.warning(message, run_id, exc_info=True)
            self._advanced.pop(ran.id, None)
            return None
        finally:
            for worker in reserved:  # not used, or the transaction rolled back
                worker.release_slot()
            asked_again = self._passes.pop(run_id)
        if asked_again:
            await self.advance_coalesced(ran.tenant_id, run_id)
        return recorded

    async def _finish_and_pass(self, finish: Finish, publisher: str, kept: KeptRun, reserved: list[Worker]) -> bool:
        ran, tenant = finish.run, TenantContext(tenant_id=finish.run.tenant_id)
        async with transaction(self.sessions) as session:
            if ran.id not in await finish_runs(session, [finish], now=utcnow(), publisher=publisher):
                return False  # the lease was lost: nothing changed
            runs = AutomationRunRepository(session, tenant)
            locked = await runs.lock_at(kept.run.id, kept.seq)
            if locked is None:
                return True  # moved since: the outcome commits alone, and the hook takes a full pass
            org_settings, org_running = locked
            for row in kept.action_runs.values():
                row[:] = [_finished(ar, finish) if ar.id == ran.id else ar for ar in row]
            state = Pass(
                session=session,
                run=kept.run,
                version=await compiled_version(session, kept.run.version_id),
                steps=kept.steps,
                action_runs=kept.action_runs,
                approval_overrides=overrides_of(org_settings),
                reserved=reserved,
                org_running=org_running,
            )
            await self._evaluate(state, tenant, settled=True)
            await self._write(state, runs)
            self._advanced[ran.id] = None  # before the commit, which may deliver the wake-up (SQLite)
            if len(self._advanced) > _ADVANCED_MAX:
                self._advanced.popitem(last=False)
        self.fused_passes += 1
        try:
            await self._after_commit(state, tenant)
        except Exception:
            log.exception("automation run %s: after its pass", kept.run.id)
        return True

    def took_pass_for(self, action_run_id: str) -> bool:
        """Whether ``finish_and_advance`` already took the pass that this ActionRun's finish calls for."""
        if action_run_id not in self._advanced:
            return False
        del self._advanced[action_run_id]
        return True

    async def _evaluate(self, state: Pass, tenant: TenantContext, *, settled: bool) -> None:
        """Move every step that can move, in topological order: collect the RUNNING ones, start or skip the
        PENDING ones whose dependencies are all terminal.

        ``settled``: the steps are as a complete pass of this process left them (``StepCache``). Such a pass
        started or skipped every PENDING step it found ready, so the only steps that can move now are the RUNNING
        ones and, as steps end, their dependents: those are all it looks at (a heap of graph positions). Without
        it every step is looked at, and a chain of n steps cost O(n) per pass, O(n²) in all."""
        version, graph = state.version, state.version.graph
        order, position = graph.order, graph.position
        if settled:
            queue = [position[key] for key, row in state.steps.items() if row.status is StepStatus.RUNNING]
            heapq.heapify(queue)
        else:
            queue = list(range(len(order)))  # already a heap
        queued = set(queue)
        fatal: str | None = None
        while queue:
            key = order[heapq.heappop(queue)]
            row, step = state.steps[key], version.steps[key]
            self.steps_evaluated += 1
            if row.status is StepStatus.RUNNING:
                await self._collect(state, tenant, row, step)
            elif row.status is StepStatus.PENDING:
                dependencies = [state.steps[d] for d in graph.dependencies[key]]
                if not all(d.status.is_terminal for d in dependencies):
                    continue
                blocking = [d for d in dependencies if d.status is not StepStatus.COMPLETED]
                if step.trigger == "all_success" and blocking:
                    reason = f"dependency {blocking[0].step_key!r} is {blocking[0].status.value}"
                    move_step(state.events, state.run, row, StepStatus.SKIPPED, reason=reason)
                else:
                    await self._launch(state, tenant, row, step)
            if row.status is StepStatus.FAILED and step.on_failure == "fail_run":
                fatal = key
                break
            if row.status.is_terminal:
                for dependent in graph.dependents_of[key]:
                    index = position[dependent]
                    if index not in queued and state.steps[dependent].status is StepStatus.PENDING:
                        queued.add(index)
                        heapq.heappush(queue, index)
        if fatal is not None:
            self._fail_run(state, fatal)
        # From the end: the last steps in the spec are mostly the last to finish, so an open one is found at once.
        elif all(row.status.is_terminal for row in reversed(state.steps.values())):
            move_run(state.events, state.run, AutomationRunStatus.COMPLETED)

    def _fail_run(self, state: Pass, failed_step: str) -> None:
        error = state.steps[failed_step].error or {}
        reason = f"the run failed at step {failed_step!r}"
        state.to_cancel += end_open_steps(state.events, state.run, state.steps, state.action_runs, reason)
        run_error = {"type": "StepFailed", "step": failed_step, "message": f"step {failed_step!r} failed: "}
        run_error["message"] += str(error.get("message", error.get("type", "")))
        move_run(state.events, state.run, AutomationRunStatus.FAILED, error=run_error)

    # -- starting a step -----------------------------------------------------------------------------------------

    async def _launch(self, state: Pass, tenant: TenantContext, row: StepState, step: Step) -> None:
        scope = state.scope(step.key)
        try:
            if step.when is not None and not evaluate_condition(step.when, scope):
                move_step(state.events, state.run, row, StepStatus.SKIPPED, reason="`when` is false")
                return
            items = self._items(step, scope)
        except ExpressionError as exc:
            error = {"type": "ExpressionError", "message": str(exc)}
            move_step(state.events, state.run, row, StepStatus.FAILED, error=error)
            return
        if items is not None and not items:
            move_step(state.events, state.run, row, StepStatus.COMPLETED, output=[], item_count=0)
            return
        move_step(state.events, state.run, row, StepStatus.RUNNING, item_count=None if items is None else len(items))
        await self._collect(state, tenant, row, step)

    @staticmethod
    def _items(step: Step, scope: dict[str, Any]) -> list[Any] | None:
        if step.for_each is None:
            return None
        items = render_value(step.for_each, scope)
        if not isinstance(items, list):
            raise ExpressionError(f"for_each must give a list, got {type(items).__name__}")
        return items

    # -- following a running step ----------------------------------------------------------------------------------

    async def _collect(self, state: Pass, tenant: TenantContext, row: StepState, step: Step) -> None:
        """Finish the step if its ActionRuns are done; else start the items it may start now."""
        existing = {item_index(ar.idempotency_key): ar for ar in state.action_runs.get(row.step_key, [])}
        total = 1 if row.item_count is None else row.item_count
        active = sum(ar.status in ACTIVE_ACTION_STATUSES for ar in existing.values())
        failed = sorted(i for i, ar in existing.items() if ar.status in (RunStatus.FAILED, RunStatus.CANCELLED))
        if not failed and len(existing) < total:
            limit = step.max_parallel or total
            next_index = len(existing)  # items start in order, so the created ones are 0..n-1
            launch = range(next_index, min(total, next_index + max(0, limit - active)))
            started = await self._start_items(state, tenant, row, step, launch)
            if started is None:
                return  # the step failed (an item's inputs did not render or validate)
            existing |= started
            active += len(started)
        if active or (not failed and len(existing) < total):
            return
        attempts = sum(ar.attempt for ar in existing.values())
        if failed:
            first = existing[failed[0]]
            error = dict(first.error or {"type": first.status.value, "message": f"action run {first.status.value}"})
            error |= {"action_run_id": first.id}
            if row.item_count is not None:
                error |= {"items_failed": failed}
            move_step(state.events, state.run, row, StepStatus.FAILED, error=error, attempts=attempts)
            return
        if row.item_count is None:
            output = existing[0].output  # read with the pass (a single run's output)
        else:
            by_key = await AutomationRunRepository(state.session, tenant).step_outputs(state.run.id, row.step_key)
            output = [by_key[existing[i].idempotency_key] for i in range(total)]
        move_step(state.events, state.run, row, StepStatus.COMPLETED, output=output, attempts=attempts)

    async def _start_items(
        self, state: Pass, tenant: TenantContext, row: StepState, step: Step, indexes: range
    ) -> dict[int, StepActionRun] | None:
        """Create the ActionRuns of these items of a step, in one INSERT; ``None`` if the step FAILED instead."""
        if not indexes:
            return {}
        items = self._items(step, state.scope(step.key)) if row.item_count is not None else None
        now = utcnow()
        new_runs: list[NewStepRun] = []
        for index in indexes:
            scope = state.scope(step.key) if items is None else state.scope(step.key, item=items[index], index=index)
            try:
                request = await self._action_request(state, tenant, step, scope)
                new_runs.append(
                    new_step_run(
                        self.registry,
                        request,
                        tenant_id=tenant.tenant_id,
                        automation_run_id=state.run.id,
                        step_key=row.step_key,
                        idempotency_key=idempotency_key(state.run.id, row.step_key, index),
                        approval_overrides=state.approval_overrides,
                        loc_prefix=("steps", row.step_key),
                        now=now,
                    )
                )
            except ExpressionError as exc:
                return self._item_failed(state, row, {"type": "ExpressionError", "message": str(exc), "item": index})
            except (ValidationFailed, Conflict) as exc:
                error = {"type": "InvalidInputs", "message": exc.detail, "item": index, "errors": list(exc.errors)}
                return self._item_failed(state, row, error)
            except NotFound as exc:
                return self._item_failed(state, row, {"type": "TemplateNotFound", "message": exc.detail, "item": index})
        new_runs = await self._hand_off(state, tenant, new_runs, now)
        inserted = await insert_step_runs(state.session, new_runs)
        state.first_events += first_events([run for run in new_runs if run.idempotency_key in inserted])
        if len(inserted) < len(new_runs):
            # A run the automation did not create holds an item's key (see step_runs.py): the step fails, and the
            # items just created are stopped.
            taken = [run.idempotency_key for run in new_runs if run.idempotency_key not in inserted]
            holders = await key_holders(state.session, tenant.tenant_id, taken)
            state.to_cancel += [run.id for run in new_runs if run.idempotency_key in inserted]
            state.adopted[:] = [(w, run) for w, run in state.adopted if run.idempotency_key not in taken]
            index = item_index(taken[0])
            message = f"idempotency key {taken[0]!r} of item {index} is held by run {holders.get(taken[0], '?')}"
            return self._item_failed(state, row, {"type": "IdempotencyConflict", "message": message, "item": index})
        started = {
            index: StepActionRun(run.id, row.step_key, run.idempotency_key, run.status, 0, None)
            for index, run in zip(indexes, new_runs, strict=True)
        }
        state.action_runs.setdefault(row.step_key, []).extend(started.values())
        state.enqueued += [run for run in new_runs if run.status is RunStatus.PENDING]
        return started

    async def _hand_off(
        self, state: Pass, tenant: TenantContext, new_runs: list[NewStepRun], now: datetime
    ) -> list[NewStepRun]:
        """Create as many of ``new_runs`` as local workers have slots for RUNNING under their leases: never a run
        that needs an approval, never past the organization's concurrency limit (its RUNNING runs count)."""
        if self.handoff is None or not any(run.status is RunStatus.PENDING for run in new_runs):
            return new_runs
        result: list[NewStepRun] = []
        for run in new_runs:
            worker = None
            if run.status is RunStatus.PENDING and state.org_running < self.handoff.org_limit:
                worker = self.handoff.reserve()
            if worker is None:
                result.append(run)
                continue
            state.reserved.append(worker)
            leased = leased_to(run, worker.name, self.handoff.running_columns(worker, now))
            state.adopted.append((worker, leased))
            state.org_running += 1
            result.append(leased)
        return result

    @staticmethod
    def _item_failed(state: Pass, row: StepState, error: dict[str, Any]) -> None:
        move_step(state.events, state.run, row, StepStatus.FAILED, error=error)

    async def _action_request(
        self, state: Pass, tenant: TenantContext, step: Step, scope: dict[str, Any]
    ) -> StepRunRequest:
        """What one item's ActionRun is: kind, inputs, limits and, for a template step, the template snapshot.

        A template step is instantiated through the templates service (params validated, body rendered) at the
        version pinned when the run started; the step's own ``timeout_s``/``retry`` win over the template's."""
        inputs = render_value(step.inputs, scope)
        max_attempts = step.retry.max_attempts if step.retry else None
        if step.template is None:
            assert step.action is not None  # a step names exactly one of them (spec validation)
            if step.connection is not None:
                inputs["connection"] = evaluate_template(step.connection, scope)
            return StepRunRequest(step.action, inputs, timeout_s=step.timeout_s, max_attempts=max_attempts)
        pin = (state.run.template_pins or {}).get(step.template)
        if pin is None:
            raise NotFound(f"template {step.template!r} did not exist when the run started")
        snapshot = await TemplateService(state.session, tenant, self.registry).snapshot(
            pin["template_id"], inputs, version=pin["version"], params_loc=["steps", step.key, "inputs"]
        )
        rendered = snapshot.rendered
        return StepRunRequest(
            kind=rendered["kind"],
            inputs=rendered.get("inputs", {}),
            priority=rendered.get("priority", 0),
            timeout_s=step.timeout_s or rendered.get("timeout_s"),
            max_attempts=max_attempts or rendered.get("max_attempts"),
            template_snapshot=snapshot.model_dump(mode="json"),
        )

    async def _pin_templates(
        self, session: AsyncSession, tenant: TenantContext, spec: AutomationSpec
    ) -> dict[str, Any]:
        """The version of each template the run's steps name, as they are now: every item and step of one run uses
        the same version, whatever happens to the template meanwhile (each ActionRun's snapshot records it)."""
        pins: dict[str, Any] = {}
        templates = TemplateService(session, tenant, self.registry)
        for ref in sorted({step.template for step in spec.steps if step.template is not None}):
            try:
                template = await templates.get_by_ref(ref)
            except NotFound:
                continue  # deleted since the automation was saved: the step fails when it starts, naming it
            pins[ref] = {"template_id": template.id, "version": template.current_version}
        return pins

    # -- queueing, cancelling, sweeping ----------------------------------------------------------------------------

    async def _queued_behind_another(
        self, runs: AutomationRunRepository, run: AutomationRun, spec: AutomationSpec
    ) -> bool:
        """A cron run with ``overlap: queue`` waits while an earlier run of the same trigger is still going."""
        if run.trigger != "cron" or run.trigger_key is None:
            return False
        policies = {
            cron_trigger_key(t, i): t.overlap for i, t in enumerate(spec.triggers) if isinstance(t, CronTrigger)
        }
        if policies.get(run.trigger_key) != "queue":
            return False
        return await runs.earlier_active(run)

    async def _start_queued(self, tenant: TenantContext, automation_id: str) -> None:
        async with self.sessions() as session:
            waiting = await AutomationRunRepository(session, tenant).oldest_pending(automation_id)
        if waiting is not None:
            await self.advance(tenant.tenant_id, waiting)

    async def cancel_action_runs(self, tenant: TenantContext, action_run_ids: Sequence[str]) -> None:
        for action_run_id in action_run_ids:
            async with self.sessions() as session:
                try:
                    await ActionRunService(session, tenant, self.registry).cancel(action_run_id)
                except (Conflict, NotFound):
                    continue  # finished meanwhile: nothing to stop

    async def cancel(self, tenant: TenantContext, run_id: str) -> AutomationRun:
        """CANCELLED at once; open steps are CANCELLED and their ActionRuns asked to stop. Finished runs: 409."""
        async with transaction(self.sessions) as session:
            runs = AutomationRunRepository(session, tenant)
            run = await runs.lock(run_id)
            if run is None:
                raise NotFound(f"automation run {run_id} not found")
            if run.status is AutomationRunStatus.CANCELLED:
                return run
            if run.status.is_terminal:
                raise Conflict(f"automation run {run_id} already finished ({run.status.value})")
            rows, action_runs = await runs.pass_view(run.id, frozenset())
            steps = {row.step_key: row for row in rows}
            events: RunEvents = []
            to_cancel = end_open_steps(events, run, steps, action_runs, "the run was cancelled")
            error = {"type": "Cancelled", "message": "cancelled on request", "requested_by": tenant.user_id}
            move_run(events, run, AutomationRunStatus.CANCELLED, error=error, cancel_requested_at=utcnow())
            session.expunge(run)  # written by write_pass, with its steps and events
            await runs.write_pass(run, [row for row in rows if row.changed], events, [])
            automation_id = run.automation_id
        self._kept.forget(run_id)
        await self.cancel_action_runs(tenant, to_cancel)
        await self._start_queued(tenant, automation_id)
        return run

    async def on_action_run_finished(self, action_run_id: str) -> None:
        """The runtime's ``on_run_finished`` hook: advance the automation run the ActionRun belongs to."""
        async with self.sessions() as session:
            owner = await EngineLookup(session).automation_run_of(action_run_id)
        if owner is not None:
            await self.advance_coalesced(*owner)

    async def advance_coalesced(self, tenant_id: str, run_id: str) -> None:
        """``advance``, folding calls that arrive during a pass into one more pass after it.

        The items of a fan-out finish in bursts; one pass reads them all, so a pass per completion would only
        queue up on the run's lock. A call while this process has a pass going just asks for one more pass, which
        then sees every completion committed before it starts (nothing is missed: the flag is set before it)."""
        if run_id in self._passes:
            self._passes[run_id] = True
            return
        self._passes[run_id] = False
        try:
            while True:
                await self.advance(tenant_id, run_id)
                if not self._passes[run_id]:
                    return
                self._passes[run_id] = False
        finally:
            del self._passes[run_id]

    async def sweep(self) -> int:
        """Advance every unfinished run (startup, and a slow timer): a lost wake-up delays a run, never strands it."""
        async with self.sessions() as session:
            unfinished = await EngineLookup(session).unfinished_runs()
        for tenant_id, run_id in unfinished:
            try:
                await self.advance(tenant_id, run_id)
            except Exception:
                log.exception("automation run %s: sweep could not advance it", run_id)
        return len(unfinished)
