"""What an automation run does next, as a pure function of its state: ``plan(state) → Plan``.

The state (``progress.py`` loads it) is the run, its compiled version, every step, and for each RUNNING step what
its ActionRuns are doing. The plan looks at the steps in topological order:

- a PENDING step whose dependencies are all terminal is SKIPPED (a dependency did not succeed and the step wants
  ``all_success``, or its ``when`` is false) or started: RUNNING, with the ActionRuns of its first items to create;
  a ``for_each`` over no items COMPLETES at once; expressions, inputs or a template that do not render FAIL it;
- a RUNNING step gets more items (up to ``max_parallel`` active, or the next ``LAUNCH_CHUNK`` of a large fan-out;
  never after an item failed), then COMPLETES when every item completed (its output: the run's output, or the list
  of the items' outputs) or FAILS once every started item ended and one failed;
- a step that FAILED with ``on_failure: fail_run``, a fan-out larger than the cap, or a cancel request ends the
  run: open steps are CANCELLED and their active ActionRuns asked to stop;
- when every step is terminal, the run COMPLETES.

Nothing here reads or writes the database, so every decision is testable on plain values.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from virtuousai.automations.spec import Step
from virtuousai.automations.states import AUTOMATION_RUN, STEP, AutomationRunStatus, StepStatus
from virtuousai.automations.version import CompiledVersion
from virtuousai.errors import Conflict, NotFound, ValidationFailed
from virtuousai.expressions.evaluation import ExpressionError, evaluate_condition, evaluate_template, render_value
from virtuousai.runtime.creation import RunRequest, check_request
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import RunOrigin
from virtuousai.templates.service import render_snapshot
from virtuousai.templates.tables import Template, TemplateVersion

# A fan-out's ActionRuns are created at most this many per pass (one transaction each), so a large ``for_each``
# never holds one huge transaction, and the run's memory does not grow with its item count.
LAUNCH_CHUNK = 500


def idempotency_key(run_id: str, step_key: str, index: int) -> str:
    return f"{run_id}:{step_key}:{index}"


def item_index(key: str | None) -> int:
    return int((key or "").rsplit(":", 1)[-1])


# -- the state a plan reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The automation run row, as far as a plan needs it."""

    id: str
    tenant_id: str
    automation_id: str
    status: AutomationRunStatus
    params: dict[str, Any]
    trigger: str
    trigger_key: str | None
    created_at: datetime
    started_at: datetime | None
    cancel_requested: bool
    template_pins: dict[str, Any] | None
    last_event_seq: int  # the run's version: every change appends an event


@dataclass(frozen=True)
class StepInfo:
    """One step row. ``output`` is read only where some expression reads it (and for COMPLETED fan-outs never)."""

    id: str
    key: str
    status: StepStatus
    item_count: int | None
    launched: int  # ActionRuns created so far: items 0 … launched-1
    output: Any
    error: dict[str, Any] | None
    started_at: datetime | None


@dataclass(frozen=True)
class ChildRun:
    """One ActionRun of a step."""

    id: str
    index: int
    status: RunStatus
    attempt: int
    error: dict[str, Any] | None
    output: Any = None


@dataclass(frozen=True)
class Children:
    """What a RUNNING step's ActionRuns are doing. ``active``: how many are not terminal — exact for a step with
    ``max_parallel``, else 0 or 1 (whether any is). ``failed``: whether any failed or was cancelled. ``ended``: every
    ActionRun in index order, read only once they all ended (the step ends with them)."""

    active: int
    failed: bool
    ended: tuple[ChildRun, ...] | None = None


@dataclass(frozen=True)
class PinnedTemplate:
    template: Template
    version: TemplateVersion


@dataclass(frozen=True)
class AutomationState:
    run: RunInfo
    version: CompiledVersion
    steps: dict[str, StepInfo]  # in topological order
    children: dict[str, Children]  # of the RUNNING steps
    approval_overrides: dict[str, bool]
    # PENDING run: the current version of each template its steps name (to pin); RUNNING: the pinned versions.
    templates: dict[str, PinnedTemplate]
    queued_behind_earlier: bool  # a cron run with ``overlap: queue`` whose trigger's earlier run is still going
    registry: KindRegistry
    fan_out_cap: int
    now: datetime
    # Idempotency keys of items held by runs this automation did not make (read only after a pass found one).
    taken: Mapping[str, str] = field(default_factory=dict)


# -- the plan ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One transition the plan makes: of the run (``step`` None) or of a step, with the values it sets (``error``,
    ``reason``, ``item_count``, ``output``, ``attempts``, ``template_pins``, ``started_at``). One event each."""

    step: str | None
    before: str
    to: AutomationRunStatus | StepStatus
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    """ActionRuns of one step to create: ``requests`` are items ``first`` … ``first + len - 1``."""

    step_key: str
    first: int
    requests: tuple[RunRequest, ...]


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)  # in the order they happen
    launches: list[Launch] = field(default_factory=list)
    cancel_steps: list[str] = field(default_factory=list)  # steps whose active ActionRuns are asked to stop
    again: bool = False  # a fan-out has items left to create: advance once more at once

    @property
    def run_to(self) -> AutomationRunStatus | None:
        """The run's status after the plan, if it moves."""
        moved = [move.to for move in self.moves if move.step is None]
        return AutomationRunStatus(moved[-1]) if moved else None

    @property
    def empty(self) -> bool:
        return not self.moves and not self.launches


# -- planning ------------------------------------------------------------------------------------------------------


class _Planner:
    """One plan in the making: a working copy of the steps, moved as the plan decides."""

    def __init__(self, state: AutomationState) -> None:
        self.state = state
        self.steps = dict(state.steps)
        self.plan = Plan()
        self.status = state.run.status

    def move_run(self, to: AutomationRunStatus, **values: Any) -> None:
        AUTOMATION_RUN.check(self.status, to)
        self.plan.moves.append(Move(None, self.status.value, to, values))
        self.status = to

    def move_step(self, key: str, to: StepStatus, **values: Any) -> None:
        step = self.steps[key]
        STEP.check(step.status, to)
        self.plan.moves.append(Move(key, step.status.value, to, values))
        changes = {name: value for name, value in values.items() if name in ("item_count", "output", "error")}
        self.steps[key] = replace(step, status=to, **changes)

    def scope(self, step_key: str, **extra: Any) -> dict[str, Any]:
        """The expression scope of one step: the steps it reads (all of them if it reads by a computed key)."""
        reads = self.state.version.reads[step_key]
        rows = self.steps.values() if reads is None else (self.steps[key] for key in reads)
        steps = {row.key: {"status": row.status.value, "output": row.output} for row in rows}
        run = self.state.run
        started = run.started_at or self.state.now
        info = {"id": run.id, "started_at": started.isoformat(), "trigger": run.trigger}
        return {"params": run.params, "steps": steps, "run": info, **extra}


def plan(state: AutomationState) -> Plan:
    planner = _Planner(state)
    run = state.run
    if run.status is AutomationRunStatus.PENDING:
        if run.cancel_requested:
            _end_run(planner, AutomationRunStatus.CANCELLED, _cancelled_error(), "the run was cancelled")
            return planner.plan
        if state.queued_behind_earlier:
            return planner.plan  # waits; the earlier run's end advances it
        pins = {ref: {"template_id": t.template.id, "version": t.version.version} for ref, t in state.templates.items()}
        planner.move_run(AutomationRunStatus.RUNNING, started_at=state.now, template_pins=pins or None)
    elif run.cancel_requested:
        _end_run(planner, AutomationRunStatus.CANCELLED, _cancelled_error(), "the run was cancelled")
        return planner.plan
    _walk(planner)
    return planner.plan


def state_after(state: AutomationState, planned: Plan) -> AutomationState:
    """The state as ``planned``, once written, leaves it: what a load would read back, but the children (a pass
    reads those again) and the outputs no expression reads. For the next pass of the same run in this process
    (``orchestration.orchestrator``'s kept states: a chain of n steps would read its n step rows on every pass)."""
    read = state.version.read_outputs_of
    steps = dict(state.steps)
    run = state.run
    for move in planned.moves:
        if move.step is None:
            run = replace(
                run,
                status=AutomationRunStatus(move.to),
                started_at=move.values.get("started_at", run.started_at),
                template_pins=move.values.get("template_pins", run.template_pins),
            )
            continue
        step = steps[move.step]
        output = move.values.get("output") if read is None or move.step in read else None
        steps[move.step] = replace(
            step,
            status=StepStatus(move.to),
            item_count=move.values.get("item_count", step.item_count),
            output=output,
            error=move.values.get("error", step.error),
            started_at=step.started_at or state.now,
        )
    for launch in planned.launches:
        steps[launch.step_key] = replace(steps[launch.step_key], launched=launch.first + len(launch.requests))
    run = replace(run, last_event_seq=run.last_event_seq + len(planned.moves))
    return replace(state, run=run, steps=steps, children={})


def _cancelled_error() -> dict[str, Any]:
    return {"type": "Cancelled", "message": "cancelled on request"}


def _walk(planner: _Planner) -> None:
    """Move every step that can move, in topological order; a step's end queues its dependents."""
    state, steps = planner.state, planner.steps
    graph = state.version.graph
    if state.run.status is AutomationRunStatus.PENDING:
        queue = list(range(len(graph.order)))  # the first pass looks at every step (already a heap)
    else:
        # Every pass starts or skips every step it finds ready, so after one only the RUNNING steps can move, and
        # the dependents of the steps that end: a chain of n steps costs O(n) in all, not O(n) per pass.
        queue = [graph.position[key] for key, step in steps.items() if step.status is StepStatus.RUNNING]
        heapq.heapify(queue)
    queued = set(queue)
    while queue:
        key = graph.order[heapq.heappop(queue)]
        step, spec = steps[key], state.version.steps[key]
        if step.status is StepStatus.RUNNING:
            _follow(planner, step, spec)
        elif step.status is StepStatus.PENDING:
            dependencies = [steps[d] for d in graph.dependencies[key]]
            if not all(d.status.is_terminal for d in dependencies):
                continue
            blocking = [d for d in dependencies if d.status is not StepStatus.COMPLETED]
            if spec.trigger == "all_success" and blocking:
                reason = f"dependency {blocking[0].key!r} is {blocking[0].status.value}"
                planner.move_step(key, StepStatus.SKIPPED, reason=reason)
            else:
                _start(planner, steps[key], spec)
        step = steps[key]
        if planner.status.is_terminal:
            return  # the step ended the run (a fan-out over the cap)
        if step.status is StepStatus.FAILED and spec.on_failure == "fail_run":
            _fail_run(planner, key)
            return
        if step.status.is_terminal:
            for dependent in graph.dependents_of[key]:
                index = graph.position[dependent]
                if index not in queued and steps[dependent].status is StepStatus.PENDING:
                    queued.add(index)
                    heapq.heappush(queue, index)
    if all(step.status.is_terminal for step in steps.values()):
        planner.move_run(AutomationRunStatus.COMPLETED)


def _fail_run(planner: _Planner, failed_step: str) -> None:
    error = planner.steps[failed_step].error or {}
    message = f"step {failed_step!r} failed: " + str(error.get("message", error.get("type", "")))
    run_error = {"type": "StepFailed", "step": failed_step, "message": message}
    _end_run(planner, AutomationRunStatus.FAILED, run_error, f"the run failed at step {failed_step!r}")


def _end_run(planner: _Planner, to: AutomationRunStatus, error: dict[str, Any], reason: str) -> None:
    """CANCEL every open step (their active ActionRuns are asked to stop after the commit) and end the run."""
    for key, step in planner.steps.items():
        if step.status.is_terminal:
            continue
        if step.status is StepStatus.RUNNING:
            planner.plan.cancel_steps.append(key)
        planner.move_step(key, StepStatus.CANCELLED, reason=reason)
    planner.move_run(to, error=error)


# -- starting a step -----------------------------------------------------------------------------------------------


def _start(planner: _Planner, step: StepInfo, spec: Step) -> None:
    state = planner.state
    scope = planner.scope(spec.key)
    try:
        if spec.when is not None and not evaluate_condition(spec.when, scope):
            planner.move_step(spec.key, StepStatus.SKIPPED, reason="`when` is false")
            return
        items = _items(spec, scope)
    except ExpressionError as exc:
        planner.move_step(spec.key, StepStatus.FAILED, error={"type": "ExpressionError", "message": str(exc)})
        return
    if items is not None and len(items) > state.fan_out_cap:
        _fan_out_too_large(planner, spec.key, len(items))
        return
    if items is not None and not items:
        planner.move_step(spec.key, StepStatus.COMPLETED, output=[], item_count=0)
        return
    planner.move_step(spec.key, StepStatus.RUNNING, item_count=None if items is None else len(items))
    _launch(planner, planner.steps[spec.key], spec, Children(active=0, failed=False), items)


def _fan_out_too_large(planner: _Planner, key: str, count: int) -> None:
    cap = planner.state.fan_out_cap
    message = (
        f"step {key!r} would start {count} ActionRuns, more than the limit of {cap} "
        "(VAI_AUTOMATION_MAX_FAN_OUT); split the items across runs, or raise the limit"
    )
    error = {"type": "fan-out-too-large", "step": key, "items": count, "limit": cap, "message": message}
    planner.move_step(key, StepStatus.FAILED, error=error)
    _end_run(planner, AutomationRunStatus.FAILED, error, f"step {key!r}: fan-out too large")


def _items(spec: Step, scope: dict[str, Any]) -> list[Any] | None:
    if spec.for_each is None:
        return None
    items = render_value(spec.for_each, scope)
    if not isinstance(items, list):
        raise ExpressionError(f"for_each must give a list, got {type(items).__name__}")
    return items


# -- following a running step --------------------------------------------------------------------------------------


def _follow(planner: _Planner, step: StepInfo, spec: Step) -> None:
    """End the step if every ActionRun it will have has ended; else create the items it may create now."""
    children = planner.state.children.get(step.key, Children(active=0, failed=False))
    total = 1 if step.item_count is None else step.item_count
    if not children.failed and step.launched < total:
        items = None
        if step.item_count is not None:
            try:
                items = _items(spec, planner.scope(spec.key))
            except ExpressionError as exc:
                planner.move_step(step.key, StepStatus.FAILED, error={"type": "ExpressionError", "message": str(exc)})
                return
        _launch(planner, step, spec, children, items)
        return
    if children.ended is None:
        return  # some still active
    ended = children.ended
    attempts = sum(child.attempt for child in ended)
    failed = [child for child in ended if child.status in (RunStatus.FAILED, RunStatus.CANCELLED)]
    if failed:
        first = failed[0]
        error: dict[str, Any] = dict(
            first.error or {"type": first.status.value, "message": f"action run {first.status.value}"}
        )
        error |= {"action_run_id": first.id}
        if step.item_count is not None:
            error |= {"items_failed": [child.index for child in failed]}
        planner.move_step(step.key, StepStatus.FAILED, error=error, attempts=attempts)
        return
    output = ended[0].output if step.item_count is None else [child.output for child in ended]
    planner.move_step(step.key, StepStatus.COMPLETED, output=output, attempts=attempts)


def _launch(planner: _Planner, step: StepInfo, spec: Step, children: Children, items: list[Any] | None) -> None:
    """Requests for the next items of a RUNNING step: up to ``max_parallel`` active, at most ``LAUNCH_CHUNK``.
    An item whose request does not render or validate fails the step (and stops the items already started)."""
    total = 1 if items is None else len(items)
    room = total - step.launched
    if spec.max_parallel is not None:
        room = min(room, spec.max_parallel - children.active)
    count = min(room, LAUNCH_CHUNK)
    if count <= 0:
        return
    requests: list[RunRequest] = []
    for index in range(step.launched, step.launched + count):
        scope = planner.scope(spec.key) if items is None else planner.scope(spec.key, item=items[index], index=index)
        try:
            request = _request(planner, spec, scope, index)
            check_request(planner.state.registry, request)
        except ExpressionError as exc:
            _item_failed(planner, step, {"type": "ExpressionError", "message": str(exc), "item": index})
            return
        except (ValidationFailed, Conflict) as exc:
            errors = list(exc.errors)
            _item_failed(
                planner, step, {"type": "InvalidInputs", "message": exc.detail, "item": index, "errors": errors}
            )
            return
        except NotFound as exc:
            _item_failed(planner, step, {"type": "TemplateNotFound", "message": exc.detail, "item": index})
            return
        holder = planner.state.taken.get(request.idempotency_key or "")
        if holder is not None:
            message = f"idempotency key {request.idempotency_key!r} of item {index} is held by run {holder}"
            _item_failed(planner, step, {"type": "IdempotencyConflict", "message": message, "item": index})
            return
        requests.append(request)
    planner.plan.launches.append(Launch(spec.key, step.launched, tuple(requests)))
    if step.launched + count < total and spec.max_parallel is None:
        planner.plan.again = True


def _item_failed(planner: _Planner, step: StepInfo, error: dict[str, Any]) -> None:
    if step.launched:
        planner.plan.cancel_steps.append(step.key)
    planner.move_step(step.key, StepStatus.FAILED, error=error)


def _request(planner: _Planner, spec: Step, scope: dict[str, Any], index: int) -> RunRequest:
    """What one item's ActionRun is: kind, inputs, limits and, for a template step, the template snapshot.

    A template step is rendered from the template version pinned when the run started (params checked against its
    schema); the step's own ``timeout_s``/``retry`` win over the template's."""
    run = planner.state.run
    common: dict[str, Any] = {
        "idempotency_key": idempotency_key(run.id, spec.key, index),
        "origin": RunOrigin.automation,
        "parent_run_id": run.id,
        "step_key": spec.key,
        "loc": ("steps", spec.key),
    }
    inputs = render_value(spec.inputs, scope)
    max_attempts = spec.retry.max_attempts if spec.retry else None
    if spec.template is None:
        assert spec.action is not None  # a step names exactly one of them (spec validation)
        if spec.connection is not None:
            inputs["connection"] = evaluate_template(spec.connection, scope)
        return RunRequest(spec.action, inputs, timeout_s=spec.timeout_s, max_attempts=max_attempts, **common)
    pinned = planner.state.templates.get(spec.template)
    if pinned is None:
        raise NotFound(f"template {spec.template!r} did not exist when the run started")
    snapshot = render_snapshot(pinned.template, pinned.version, inputs, ["steps", spec.key, "inputs"])
    rendered = snapshot.rendered
    return RunRequest(
        kind=rendered["kind"],
        inputs=rendered.get("inputs", {}),
        priority=rendered.get("priority", 0),
        timeout_s=spec.timeout_s or rendered.get("timeout_s"),
        max_attempts=max_attempts or rendered.get("max_attempts"),
        template_snapshot=snapshot.model_dump(mode="json"),
        **common,
    )
