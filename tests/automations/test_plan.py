"""``plan(state)`` (``automations/plan.py``) on plain values: no database, no worker. Each test builds the state a
pass would load — the run, its compiled version, its steps and what their ActionRuns are doing — and reads the
plan: the moves, the ActionRuns to create, the steps whose ActionRuns to stop."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from virtuousai.actions.registry import default_registry
from virtuousai.automations.plan import (
    LAUNCH_CHUNK,
    AutomationState,
    Children,
    ChildRun,
    Launch,
    Move,
    RunInfo,
    StepInfo,
    plan,
    state_after,
)
from virtuousai.automations.spec import AutomationSpec
from virtuousai.automations.states import AutomationRunStatus as Run
from virtuousai.automations.states import StepStatus as Step
from virtuousai.automations.version import compile_version
from virtuousai.runtime.creation import RunRequest
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import RunOrigin

RUN_ID = "arun_01TEST"
NOW = datetime(2030, 1, 31, 6, 0, tzinfo=UTC)


def given(
    spec_steps: list[dict[str, Any]],
    *,
    run: Run = Run.RUNNING,
    steps: dict[str, dict[str, Any]] | None = None,
    children: dict[str, Children] | None = None,
    cancel_requested: bool = False,
    fan_out_cap: int = 10_000,
    taken: dict[str, str] | None = None,
    last_event_seq: int = 3,
) -> AutomationState:
    """The state of run ``RUN_ID`` of an automation with ``spec_steps``: every step PENDING but for ``steps``
    (key → the ``StepInfo`` fields that differ)."""
    version = compile_version(AutomationSpec.model_validate({"name": "t", "slug": "t", "steps": spec_steps}))
    infos = {key: StepInfo(f"step_{key}", key, Step.PENDING, None, 0, None, None, None) for key in version.graph.order}
    for key, changes in (steps or {}).items():
        infos[key] = replace(infos[key], **changes)
    return AutomationState(
        run=RunInfo(
            id=RUN_ID,
            tenant_id="org_test",
            automation_id="aut_test",
            status=run,
            params={},
            trigger="manual",
            trigger_key=None,
            created_at=NOW,
            started_at=None if run is Run.PENDING else NOW,
            cancel_requested=cancel_requested,
            template_pins=None,
            last_event_seq=last_event_seq,
        ),
        version=version,
        steps=infos,
        children=children or {},
        approval_overrides={},
        templates={},
        queued_behind_earlier=False,
        registry=default_registry(),
        fan_out_cap=fan_out_cap,
        now=NOW,
        taken=taken or {},
    )


def request(step: str, inputs: dict[str, Any], index: int = 0) -> RunRequest:
    """The ActionRun request a step's item makes (an ``echo`` step)."""
    return RunRequest(
        "echo",
        inputs,
        idempotency_key=f"{RUN_ID}:{step}:{index}",
        origin=RunOrigin.automation,
        parent_run_id=RUN_ID,
        step_key=step,
        loc=("steps", step),
    )


# The first pass of a run: it starts (steps become ready only in the pass that ends their dependencies, or here).
STARTS = Move(None, "PENDING", Run.RUNNING, {"started_at": NOW, "template_pins": None})
RUNNING_ONE = {"status": Step.RUNNING, "launched": 1, "started_at": NOW}


def ended(status: RunStatus, *, output: Any = None, error: dict[str, Any] | None = None) -> Children:
    """A single-run step whose one ActionRun ended."""
    return Children(
        active=0, failed=status is not RunStatus.COMPLETED, ended=(ChildRun("run_1", 0, status, 1, error, output),)
    )


def test_a_pending_run_starts_and_starts_its_ready_steps_with_their_requests() -> None:
    state = given(
        [
            {"key": "a", "action": "echo", "inputs": {"n": 1}},
            {"key": "b", "action": "echo", "inputs": {"n": "${{ steps.a.output.n }}"}},
        ],
        run=Run.PENDING,
    )
    planned = plan(state)
    assert planned.moves == [
        STARTS,
        Move("a", "PENDING", Step.RUNNING, {"item_count": None}),
    ]
    assert planned.launches == [Launch("a", 0, (request("a", {"n": 1}),))]
    assert (planned.cancel_steps, planned.again) == ([], False)


def test_a_step_whose_dependencies_completed_starts_with_their_outputs() -> None:
    state = given(
        [
            {"key": "a", "action": "echo"},
            {"key": "b", "action": "echo", "inputs": {"n": "${{ steps.a.output.n + 1 }}"}},
        ],
        steps={"a": RUNNING_ONE},
        children={"a": ended(RunStatus.COMPLETED, output={"n": 41})},
    )
    planned = plan(state)
    assert planned.moves == [
        Move("a", "RUNNING", Step.COMPLETED, {"output": {"n": 41}, "attempts": 1}),
        Move("b", "PENDING", Step.RUNNING, {"item_count": None}),
    ]
    assert planned.launches == [Launch("b", 0, (request("b", {"n": 42}),))]


def test_all_success_skips_a_step_whose_dependency_failed_and_says_why() -> None:
    state = given(
        [
            {"key": "a", "action": "fail", "on_failure": "continue"},
            {"key": "b", "action": "echo", "depends_on": ["a"]},
            {"key": "c", "action": "echo", "depends_on": ["a"], "trigger": "all_done"},
        ],
        steps={"a": RUNNING_ONE},
        children={"a": ended(RunStatus.FAILED, error={"type": "DemoError", "message": "no"})},
    )
    planned = plan(state)
    error = {"type": "DemoError", "message": "no", "action_run_id": "run_1"}
    assert planned.moves == [
        Move("a", "RUNNING", Step.FAILED, {"error": error, "attempts": 1}),
        Move("b", "PENDING", Step.SKIPPED, {"reason": "dependency 'a' is FAILED"}),
        Move("c", "PENDING", Step.RUNNING, {"item_count": None}),  # all_done: it runs anyway
    ]
    assert [launch.step_key for launch in planned.launches] == ["c"]


def test_a_failed_step_fails_the_run_and_cancels_the_open_steps() -> None:
    state = given(
        [
            {"key": "slow", "action": "sleep", "inputs": {"seconds": 30}},
            {"key": "boom", "action": "fail"},
            {"key": "after", "action": "echo", "depends_on": ["boom"]},
        ],
        steps={"slow": RUNNING_ONE, "boom": RUNNING_ONE},
        children={"slow": Children(active=1, failed=False), "boom": ended(RunStatus.FAILED, error={"type": "X"})},
    )
    planned = plan(state)
    reason = {"reason": "the run failed at step 'boom'"}
    assert [(m.step, m.to) for m in planned.moves] == [
        ("boom", Step.FAILED),
        ("slow", Step.CANCELLED),
        ("after", Step.CANCELLED),
        (None, Run.FAILED),
    ]
    assert planned.moves[1].values == planned.moves[2].values == reason
    assert planned.moves[-1].values["error"]["step"] == "boom"
    assert (planned.launches, planned.cancel_steps) == ([], ["slow"])


def test_a_fan_out_creates_at_most_a_chunk_of_items_per_pass_and_asks_for_another() -> None:
    items = list(range(LAUNCH_CHUNK + 10))
    state = given(
        [{"key": "fan", "action": "echo", "for_each": items, "inputs": {"i": "${{ item }}"}}], run=Run.PENDING
    )
    first = plan(state)
    assert first.moves == [STARTS, Move("fan", "PENDING", Step.RUNNING, {"item_count": len(items)})]
    ((launch,),) = [first.launches]
    assert (launch.first, len(launch.requests), first.again) == (0, LAUNCH_CHUNK, True)
    assert launch.requests[7] == request("fan", {"i": 7}, index=7)

    # The next pass, as the first left it, creates the rest and is done creating.
    after = replace(state_after(state, first), children={"fan": Children(active=1, failed=False)})
    second = plan(after)
    ((rest,),) = [second.launches]
    assert (second.moves, rest.first, len(rest.requests), second.again) == ([], LAUNCH_CHUNK, 10, False)
    assert rest.requests[-1].idempotency_key == f"{RUN_ID}:fan:{len(items) - 1}"


def test_max_parallel_creates_only_as_many_items_as_leave_that_many_active() -> None:
    spec = [{"key": "fan", "action": "echo", "for_each": list(range(10)), "max_parallel": 3, "inputs": {}}]
    state = given(
        spec,
        steps={"fan": {"status": Step.RUNNING, "item_count": 10, "launched": 3, "started_at": NOW}},
        children={"fan": Children(active=1, failed=False)},  # two of the three ended
    )
    planned = plan(state)
    assert [(launch.first, len(launch.requests)) for launch in planned.launches] == [(3, 2)]
    assert (planned.moves, planned.again) == ([], False)
    full = replace(state, children={"fan": Children(active=3, failed=False)})
    assert plan(full).launches == []


def test_a_fan_out_larger_than_the_cap_fails_the_step_and_the_run_and_creates_nothing() -> None:
    state = given([{"key": "fan", "action": "echo", "for_each": list(range(6))}], run=Run.PENDING, fan_out_cap=5)
    planned = plan(state)
    assert [(m.step, m.to) for m in planned.moves] == [(None, Run.RUNNING), ("fan", Step.FAILED), (None, Run.FAILED)]
    step_error, run_error = (m.values["error"] for m in planned.moves[1:])
    assert step_error == run_error
    assert (step_error["type"], step_error["items"], step_error["limit"]) == ("fan-out-too-large", 6, 5)
    assert (planned.launches, planned.again) == ([], False)


def test_an_items_key_taken_by_another_run_fails_the_step() -> None:
    spec = [{"key": "a", "action": "echo", "on_failure": "continue"}]
    state = given(spec, run=Run.PENDING, taken={f"{RUN_ID}:a:0": "run_FOREIGN"})
    planned = plan(state)
    assert [(m.step, m.to) for m in planned.moves] == [
        (None, Run.RUNNING),
        ("a", Step.RUNNING),
        ("a", Step.FAILED),
        (None, Run.COMPLETED),
    ]
    error = planned.moves[2].values["error"]
    assert (error["type"], error["item"]) == ("IdempotencyConflict", 0)
    assert "run_FOREIGN" in error["message"]
    assert (planned.launches, planned.cancel_steps) == ([], [])  # nothing was created: nothing to stop


def test_a_cancel_request_cancels_the_open_steps_and_stops_the_running_ones() -> None:
    state = given(
        [
            {"key": "done", "action": "echo"},
            {"key": "busy", "action": "sleep", "inputs": {"seconds": 30}},
            {"key": "later", "action": "echo", "depends_on": ["busy"]},
        ],
        steps={"done": {"status": Step.COMPLETED}, "busy": RUNNING_ONE},
        children={"busy": Children(active=1, failed=False)},
        cancel_requested=True,
    )
    planned = plan(state)
    reason = {"reason": "the run was cancelled"}
    assert planned.moves == [
        Move("busy", "RUNNING", Step.CANCELLED, reason),
        Move("later", "PENDING", Step.CANCELLED, reason),
        Move(None, "RUNNING", Run.CANCELLED, {"error": {"type": "Cancelled", "message": "cancelled on request"}}),
    ]
    assert (planned.launches, planned.cancel_steps) == ([], ["busy"])


def test_the_run_completes_when_its_last_step_ends_and_not_before() -> None:
    spec = [{"key": "a", "action": "echo"}, {"key": "b", "action": "echo"}]
    waiting = given(spec, steps={"a": {"status": Step.COMPLETED}, "b": RUNNING_ONE})
    assert plan(replace(waiting, children={"b": Children(active=1, failed=False)})).empty
    planned = plan(replace(waiting, children={"b": ended(RunStatus.COMPLETED, output={"x": 1})}))
    assert planned.moves == [
        Move("b", "RUNNING", Step.COMPLETED, {"output": {"x": 1}, "attempts": 1}),
        Move(None, "RUNNING", Run.COMPLETED, {}),
    ]
    assert planned.run_to is Run.COMPLETED


def test_the_state_after_a_plan_is_what_the_next_pass_would_load() -> None:
    spec = [
        {"key": "a", "action": "echo", "inputs": {"n": 1}},
        {"key": "b", "action": "echo", "inputs": {"n": "${{ steps.a.output.n }}"}},
    ]
    state = given(spec, run=Run.PENDING, last_event_seq=1)
    planned = plan(state)
    loaded = given(spec, run=Run.RUNNING, steps={"a": RUNNING_ONE}, last_event_seq=1 + len(planned.moves))
    assert state_after(state, planned) == loaded
    # And the next pass plans from it what it would plan from the loaded state.
    finished = {"a": ended(RunStatus.COMPLETED, output={"n": 1})}
    assert plan(replace(state_after(state, planned), children=finished)) == plan(replace(loaded, children=finished))
