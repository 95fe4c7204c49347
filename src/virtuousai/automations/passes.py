"""What one engine pass works with: the run's compiled version, its steps and ActionRuns, and the two state machines
applied to them (one function each).

A pass reads the run in two statements (the locked run row; every step with the ActionRuns of the running ones),
decides in memory, and writes back only what moved: the steps it moved (one statement), the run row and its events
(one flush), the new ActionRuns (one INSERT per step started). ``engine.py`` drives it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.automations.expression_syntax import Literal, Lookup, Name, nodes_of
from virtuousai.automations.expressions import ExpressionError, parse_condition, parse_template, step_references
from virtuousai.automations.graph import StepGraph, build_graph, expression_fields
from virtuousai.automations.repository import StepActionRun, StepState
from virtuousai.automations.spec import AutomationSpec, Step
from virtuousai.automations.states import AutomationRunStatus, StepStatus, check_run_transition, check_step_transition
from virtuousai.automations.step_runs import NewStepRun
from virtuousai.automations.tables import AutomationRun, AutomationVersion
from virtuousai.ids import new_id
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.worker import Worker
from virtuousai.timeutil import utcnow

ACTIVE_ACTION_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL})


# -- the state machines, applied in one place each -------------------------------------------------------------


# The ``automation_run_events`` rows a pass (or a cancel, or a run's creation) staged; written once, with the rest
# of its changes (``AutomationRunRepository.write_pass``).
RunEvents = list[dict[str, Any]]


def append_run_event(events: RunEvents, run: AutomationRun, kind: str, data: dict[str, Any]) -> None:
    """Number and stage an event; the caller holds the run's lock, so the counter cannot race."""
    run.last_event_seq += 1
    events.append(
        {
            "id": new_id("aevt"),
            "tenant_id": run.tenant_id,
            "automation_run_id": run.id,
            "seq": run.last_event_seq,
            "kind": kind,
            "data": data,
            "created_at": utcnow(),
        }
    )


def move_run(events: RunEvents, run: AutomationRun, to: AutomationRunStatus, **values: Any) -> None:
    check_run_transition(run.status, to)
    now = utcnow()
    append_run_event(events, run, "run", {"from": run.status.value, "to": to.value, **_public(values)})
    run.status, run.updated_at = to, now
    if to is AutomationRunStatus.RUNNING:
        run.started_at = now
    if to.is_terminal:
        run.finished_at = now
    for name, value in values.items():
        setattr(run, name, value)


def move_step(events: RunEvents, run: AutomationRun, step: StepState, to: StepStatus, **values: Any) -> None:
    check_step_transition(step.status, to)
    now = utcnow()
    data = {"step": step.step_key, "from": step.status.value, "to": to.value, **_public(values)}
    append_run_event(events, run, "step", data)
    step.status, step.changed = to, True
    if to is StepStatus.RUNNING:
        step.started_at = now
    if to.is_terminal:
        step.finished_at = now
        step.started_at = step.started_at or now
    for name, value in values.items():
        setattr(step, name, value)


def end_open_steps(
    events: RunEvents,
    run: AutomationRun,
    steps: dict[str, StepState],
    action_runs: dict[str, list[StepActionRun]],
    reason: str,
) -> list[str]:
    """CANCEL every unfinished step; returns the ActionRuns still going, to be asked to stop after the commit."""
    to_cancel: list[str] = []
    for row in steps.values():
        if row.status.is_terminal:
            continue
        to_cancel += [ar.id for ar in action_runs.get(row.step_key, []) if ar.status in ACTIVE_ACTION_STATUSES]
        move_step(events, run, row, StepStatus.CANCELLED, reason=reason)
    return to_cancel


def _public(values: dict[str, Any]) -> dict[str, Any]:
    # Events carry the why (error, reason), not the outputs, which can be large; GET the run for those.
    return {k: v for k, v in values.items() if k in ("error", "reason", "item_count")}


# -- versions, compiled once per process -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledVersion:
    """A version's spec and graph, and which steps each step's expressions read (``None``: any step, through a
    computed lookup such as ``steps[params.name]``), so a pass reads only the outputs some expression needs."""

    spec: AutomationSpec
    graph: StepGraph
    steps: dict[str, Step]
    reads: dict[str, frozenset[str] | None]
    read_outputs_of: frozenset[str] | None


def steps_read_by(step: Step) -> frozenset[str] | None:
    """The step keys a step's expressions look up, or ``None`` when one uses ``steps`` other than as
    ``steps.<key>`` / ``steps['<key>']`` (then it may read any step)."""
    keys: set[str] = set()
    for _, text, is_condition in expression_fields(step):
        try:
            parsed = parse_condition(text) if is_condition else parse_template(text)
        except ExpressionError:
            continue  # validation refused it at create time; at run time it fails the step
        nodes = list(nodes_of(parsed))
        uses = sum(isinstance(node, Name) and node.name == "steps" for node in nodes)
        static = sum(
            isinstance(node, Lookup)
            and isinstance(node.target, Name)
            and node.target.name == "steps"
            and isinstance(node.key, Literal)
            and isinstance(node.key.value, str)
            for node in nodes
        )
        if uses != static:
            return None
        keys |= step_references(parsed)
    return frozenset(keys)


def compile_version(spec: AutomationSpec) -> CompiledVersion:
    reads = {step.key: steps_read_by(step) for step in spec.steps}
    read_outputs_of: frozenset[str] | None = frozenset()
    for keys in reads.values():
        read_outputs_of = None if keys is None or read_outputs_of is None else read_outputs_of | keys
    steps = {step.key: step for step in spec.steps}
    return CompiledVersion(spec, build_graph(spec), steps, reads, read_outputs_of)


# Versions never change: each process compiles a version once, not on every pass.
_COMPILED: OrderedDict[str, CompiledVersion] = OrderedDict()
_COMPILED_MAX = 256


async def compiled_version(session: AsyncSession, version_id: str) -> CompiledVersion:
    """The compiled version ``version_id`` (the caller read the run, in its tenant, that names it)."""
    if version_id in _COMPILED:
        _COMPILED.move_to_end(version_id)
        return _COMPILED[version_id]
    version = await session.get(AutomationVersion, version_id)
    assert version is not None  # runs reference their version (foreign key)
    _COMPILED[version_id] = compile_version(AutomationSpec.model_validate(version.spec))
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return _COMPILED[version_id]


# -- step states kept between passes -------------------------------------------------------------------------


@dataclass
class KeptRun:
    """A run as this process's last pass of it left it: its row (detached from any session), its steps, and the
    ActionRuns of its RUNNING steps, all as of the run's event counter ``seq``."""

    seq: int
    run: AutomationRun
    steps: dict[str, StepState]
    action_runs: dict[str, list[StepActionRun]]
    sole_active: str | None  # the one active ActionRun of the running steps, if there is exactly one


class StepCache:
    """The state a pass of this process left behind, so the next pass of the same run need not read every step
    again (a chain of n steps would read n rows on each of its n passes).

    Every change to a run's steps goes through ``move_step``, which appends a run event under the run's lock, so
    the run's ``last_event_seq`` versions its steps: states kept at seq ``s`` are exactly what the table holds
    while the locked run still shows ``s``. Any other writer (another process's pass, a cancel) moves the seq
    and the next pass here reads the table. A pass ``take``s the states (a pass that rolls back must not leave
    its half-made changes behind) and ``keep``s them again after its commit. The ActionRuns are kept for
    ``AutomationEngine.finish_and_advance``, which trusts them only for a run with a single active ActionRun."""

    def __init__(self, max_runs: int = 1024) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, KeptRun] = OrderedDict()

    def take(self, run_id: str, seq: int) -> KeptRun | None:
        """The kept state of ``run_id`` if it is at ``seq``, removed from the cache either way."""
        kept = self._runs.pop(run_id, None)
        return None if kept is None or kept.seq != seq else kept

    def peek(self, run_id: str) -> KeptRun | None:
        return self._runs.get(run_id)

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def keep(self, state: Pass) -> None:
        """Keep what ``state`` left, as a pass reading the table would find it: the rows it did not move are so
        already, and only the ActionRuns of RUNNING steps are kept (a chain would otherwise carry every step's)."""
        run, read = state.run, state.version.read_outputs_of
        for row in state.changed_steps():
            row.changed = False
            if read is not None and row.step_key not in read:
                row.output = None  # as the table read gives it: outputs only where an expression reads them
        running = [key for key, row in state.steps.items() if row.status is StepStatus.RUNNING]
        action_runs = {key: state.action_runs[key] for key in running if key in state.action_runs}
        active = [ar.id for runs in action_runs.values() for ar in runs if ar.status in ACTIVE_ACTION_STATUSES]
        sole_active = active[0] if len(active) == 1 else None
        self._runs[run.id] = KeptRun(run.last_event_seq, run, state.steps, action_runs, sole_active)
        if len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)


# -- one pass ----------------------------------------------------------------------------------------------------


@dataclass
class Pass:
    """What one ``advance`` reads and decides."""

    session: AsyncSession
    run: AutomationRun
    version: CompiledVersion
    steps: dict[str, StepState]
    action_runs: dict[str, list[StepActionRun]]
    approval_overrides: dict[str, bool]
    events: RunEvents = field(default_factory=list)
    first_events: list[dict[str, Any]] = field(default_factory=list)  # of the new ActionRuns (``first_events``)
    to_cancel: list[str] = field(default_factory=list)
    enqueued: list[NewStepRun] = field(default_factory=list)  # new PENDING ActionRuns: one wake-up at the end
    # Slots reserved on this process's workers (``runtime/handoff.py``) → the RUNNING ActionRun created for each,
    # handed to its worker once the pass commits; a reservation left without a run is released.
    reserved: list[Worker] = field(default_factory=list)
    adopted: list[tuple[Worker, NewStepRun]] = field(default_factory=list)
    org_running: int = 0  # the organization's RUNNING ActionRuns, counted up as the pass hands runs off

    def scope(self, step_key: str, **extra: Any) -> dict[str, Any]:
        """The expression scope of one step: the steps it reads (all of them if it reads by a computed key)."""
        reads = self.version.reads[step_key]
        rows = self.steps.values() if reads is None else (self.steps[key] for key in reads)
        steps = {row.step_key: {"status": row.status.value, "output": row.output} for row in rows}
        started = self.run.started_at or self.run.created_at
        run = {"id": self.run.id, "started_at": started.isoformat(), "trigger": self.run.trigger}
        return {"params": self.run.params, "steps": steps, "run": run, **extra}

    def changed_steps(self) -> list[StepState]:
        return [row for row in self.steps.values() if row.changed]
