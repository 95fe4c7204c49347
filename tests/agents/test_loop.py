"""``loop.plan`` on plain values: what an agent run does next, with no database, no worker and no model."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart

from tests.agents.kinds_tools import LookupInput
from virtuousai.agents.loop import AgentState, Child, Limits, RunInfo, Step, SubAgent, Tool, plan
from virtuousai.agents.spec import parse_spec
from virtuousai.agents.states import AgentRunStatus, StepKind, StepStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_tool_calls=3, timeout_s=60, max_depth=2, result_max_chars=50)
LOOKUP = Tool("agent_lookup", "agent_lookup", "look up", LookupInput.model_json_schema(), LookupInput)
SEND = replace(LOOKUP, name="agent_send", kind="agent_send", gated=True)
CALL = Tool("call_agent", None, "delegate", {}, None)


def spec(**front: Any) -> Any:
    lines = ["---", "name: T", "slug: t", f"mode: {front.pop('mode', 'primary')}", "tools: [agent_lookup]"]
    lines += [f"{key}: {value}" for key, value in front.items()]
    return parse_spec("\n".join([*lines, "---", "", "Be useful.", ""]))


def state(
    *,
    status: AgentRunStatus = AgentRunStatus.RUNNING,
    steps: tuple[Step, ...] = (),
    children: dict[str, Child] | None = None,
    tools: tuple[Tool, ...] = (LOOKUP,),
    agent: Any = None,
    **run: Any,
) -> AgentState:
    counter = itertools.count()
    info = RunInfo(
        id="agrun_1",
        tenant_id="org_1",
        spec_id="agt_1",
        spec_version=1,
        status=status,
        input="How many?",
        context={},
        depth=run.pop("depth", 0),
        parent_run_id=None,
        turn_id=None,
        message_id=None,
        budget=run.pop("budget", None),
        cost=run.pop("cost", Decimal(0)),
        cost_unknown=run.pop("cost_unknown", False),
        input_tokens=0,
        output_tokens=0,
        tool_calls=run.pop("tool_calls", 0),
        model_calls=len([s for s in steps if s.kind is StepKind.model]),
        running_s=run.pop("running_s", 0.0),
        running_since=run.pop("running_since", NOW if status is AgentRunStatus.RUNNING else None),
        cancel_requested=run.pop("cancel_requested", False),
        last_event_seq=7,
        pending_approvals=run.pop("pending_approvals", ()),
    )
    assert not run, run
    return AgentState(
        run=info,
        spec=agent or spec(),
        steps=steps,
        children=children or {},
        tools={tool.name: tool for tool in tools},
        sub_agents={},
        llm={"connections": ["conn_1"], "selection": {"requested": "x", "models": {}, "use_connection_defaults": True}},
        limits=LIMITS,
        now=NOW,
        new_id=lambda prefix: f"{prefix}_{next(counter)}",
    )


def model_step(*calls: tuple[str, Any], text: str = "", status: StepStatus = StepStatus.COMPLETED) -> Step:
    parts: list[Any] = [TextPart(text)] if text else []
    parts += [ToolCallPart(name, args, tool_call_id=f"c{i}") for i, (name, args) in enumerate(calls)]
    result = ModelMessagesTypeAdapter.dump_python([ModelResponse(parts=parts)], mode="json")[0]
    return Step("agstep_m", 0, StepKind.model, status, (), action_run_id="run_m", result=result)


def tool_step(tool: str, args: dict[str, Any], status: StepStatus) -> Step:
    """The tool call ``c0`` of ``model_step``'s answer, as its ActionRun ``run_t`` runs it."""
    return Step(
        "agstep_t",
        1,
        StepKind.tool,
        status,
        ("agstep_m",),
        tool=tool,
        tool_call_id="c0",
        args=args,
        action_run_id="run_t",
    )


def test_the_first_pass_starts_the_run_and_its_first_model_call() -> None:
    planned = plan(state(status=AgentRunStatus.PENDING, running_since=None))
    assert planned.moves == [AgentRunStatus.RUNNING]
    [request] = planned.children
    assert request.kind == "agent_model_call" and request.parent_run_id == "agrun_1"
    assert [m["kind"] for m in request.inputs["messages"]] == ["request"]
    assert [e for e, _ in planned.events] == ["run_started", "step_started"]
    assert planned.new_steps[0]["action_run_id"] == request.run_id


def test_a_text_answer_completes_the_run() -> None:
    planned = plan(state(steps=(model_step(text="Seven."),)))
    assert planned.moves == [AgentRunStatus.COMPLETED] and planned.run_values["output"] == "Seven."


def test_tool_calls_become_steps_keyed_by_their_call_ids() -> None:
    planned = plan(state(steps=(model_step(("agent_lookup", {"q": "a"}), ("agent_lookup", {"q": "b"})),)))
    assert [r.idempotency_key for r in planned.children] == ["agrun_1:agstep_m:c0", "agrun_1:agstep_m:c1"]
    assert [s["parents"] for s in planned.new_steps] == [["agstep_m"], ["agstep_m"]]
    assert planned.run_values["tool_calls"] == 2


def test_a_write_tool_parks_the_run() -> None:
    planned = plan(state(steps=(model_step(("agent_send", {"q": "x"})),), tools=(LOOKUP, SEND)))
    assert planned.moves == [AgentRunStatus.AWAITING_APPROVAL]
    [waiting] = planned.run_values["pending_approvals"]
    assert waiting["tool"] == "agent_send" and len(waiting["inputs_hash"]) == 64
    assert "approval_required" in [e for e, _ in planned.events]
    assert planned.run_values["running_s"] == 0.0 and planned.run_values["running_since"] is None


def test_the_tool_call_limit() -> None:
    planned = plan(state(steps=(model_step(("agent_lookup", {"q": "a"}), ("agent_lookup", {"q": "b"})),), tool_calls=2))
    assert (planned.moves, planned.run_values["reason"]) == ([AgentRunStatus.FAILED], "tool_call_limit")
    assert planned.children == []  # the call within the limit is not started by a run that ends


def test_invalid_calls_get_retry_prompts_then_fail() -> None:
    first = plan(state(steps=(model_step(("nope", {})),)))
    refused, _ = first.new_steps  # and the model call that gets the retry prompt
    assert (refused["status"], refused["error"]["type"]) == ("REFUSED", "unknown_tool")
    [retry] = first.children
    assert retry.kind == "agent_model_call"
    assert "'outcome': 'retried'" in str(retry.inputs["messages"][-1])
    # After the last allowed retry, the next invalid call fails the run.
    tired = replace(model_step(("nope", {})), retries=LIMITS.max_retries)
    assert plan(state(steps=(tired,))).run_values["reason"] == "tool_error"


def test_the_budget_is_checked_before_each_model_call() -> None:
    done_tool = tool_step("agent_lookup", {"q": "a"}, StepStatus.RUNNING)
    children = {"agstep_t": Child("COMPLETED", output={"answer": "x" * 100})}
    over = plan(
        state(
            steps=(model_step(("agent_lookup", {"q": "a"})), done_tool),
            children=children,
            budget=Decimal("0.05"),
            cost=Decimal("0.05"),
        )
    )
    assert over.run_values["reason"] == "budget_exceeded"
    unknown = plan(
        state(
            steps=(model_step(("agent_lookup", {"q": "a"})), done_tool),
            children=children,
            budget=Decimal("1"),
            cost_unknown=True,
        )
    )
    assert unknown.run_values["reason"] == "cost_unknown"
    free = plan(state(steps=(model_step(("agent_lookup", {"q": "a"})), done_tool), children=children))
    [next_call] = free.children
    # The result was cut to result_max_chars, and says so.
    tool_row = next(row for row in free.changed_steps if row["id"] == "agstep_t")
    assert "[cut:" in tool_row["result"]["content"] and len(tool_row["result"]["content"]) < 120
    assert next_call.kind == "agent_model_call"


def test_the_timeout_counts_running_time_only() -> None:
    long_ago = NOW - timedelta(seconds=61)
    assert (
        plan(state(steps=(model_step(text="x", status=StepStatus.RUNNING),), running_since=long_ago)).run_values[
            "reason"
        ]
        == "timeout"
    )
    parked = tool_step("agent_send", {"q": "x"}, StepStatus.AWAITING_APPROVAL)
    parked_run = {
        "status": AgentRunStatus.AWAITING_APPROVAL,
        "steps": (model_step(("agent_send", {"q": "x"})), parked),
        "children": {"agstep_t": Child("AWAITING_APPROVAL")},
        "tools": (LOOKUP, SEND),
        "running_since": None,
        "running_s": 59.0,  # a minute of waiting later: still within the limit
    }
    pending = plan(state(**parked_run)).run_values["pending_approvals"]
    assert plan(state(**parked_run, pending_approvals=tuple(pending))).empty


def test_a_cancel_request_ends_the_run_and_stops_its_children() -> None:
    running = replace(model_step(text=""), status=StepStatus.RUNNING)
    planned = plan(state(steps=(running,), cancel_requested=True))
    assert (planned.moves, planned.run_values["reason"]) == ([AgentRunStatus.CANCELLED], "cancelled")
    assert planned.cancel_action_runs == ["run_m"]


def test_delegation_gets_what_is_left_of_the_budget() -> None:
    boss = parse_spec(
        "---\nname: T\nslug: t\nmode: primary\ntools: [call_agent]\nsub_agents: [helper]\n---\n\nDelegate.\n"
    )
    delegating = model_step(("call_agent", {"agent": "helper", "question": "?"}))
    base = state(steps=(delegating,), tools=(CALL,), agent=boss, budget=Decimal("0.10"), cost=Decimal("0.04"))
    with_sub = replace(base, sub_agents={"helper": SubAgent("agt_h", "agtv_h", 1, "helper", Decimal("0.5"))})
    [child] = plan(with_sub).agent_runs
    assert (child["budget"], child["depth"], child["parent_run_id"]) == ("0.06", 1, "agrun_1")
    deep = replace(with_sub, run=replace(with_sub.run, depth=2))
    refused, _ = plan(deep).new_steps
    assert refused["error"]["type"] == "delegation_refused"
