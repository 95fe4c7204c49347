"""The AgentRun state machine (seeds/002, "Agent Run Lifecycle") and its steps', as data (``runtime/machine.py``).

    PENDING ──▶ RUNNING ──▶ COMPLETED | FAILED | CANCELLED
       │           │  ▲
       │           ▼  │ approved
       │     AWAITING_APPROVAL ──rejected──▶ CANCELLED
       └──cancel──▶ CANCELLED

Terminal states never change. A FAILED or CANCELLED run says why in ``reason`` (``REASONS``) and ``detail``.
"""

from __future__ import annotations

import enum

from virtuousai.runtime.machine import StateMachine


class AgentRunStatus(enum.StrEnum):
    # Created; its first pass starts its first model call.
    PENDING = "PENDING"
    # A model call or tool calls are in flight (the workers hold them, not this run).
    RUNNING = "RUNNING"
    # A write tool's call waits for a human (here or in a delegated run); holds no worker.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return AGENT_RUN.is_terminal(self)


AGENT_RUN: StateMachine[AgentRunStatus] = StateMachine(
    "agent run",
    {
        AgentRunStatus.PENDING: frozenset({AgentRunStatus.RUNNING, AgentRunStatus.CANCELLED}),
        AgentRunStatus.RUNNING: frozenset(
            {
                AgentRunStatus.AWAITING_APPROVAL,
                AgentRunStatus.COMPLETED,
                AgentRunStatus.FAILED,
                AgentRunStatus.CANCELLED,
            }
        ),
        AgentRunStatus.AWAITING_APPROVAL: frozenset({AgentRunStatus.RUNNING, AgentRunStatus.CANCELLED}),
        AgentRunStatus.COMPLETED: frozenset(),
        AgentRunStatus.FAILED: frozenset(),
        AgentRunStatus.CANCELLED: frozenset(),
    },
)


class StepStatus(enum.StrEnum):
    # Its ActionRun (or delegated run) exists and has not ended; AWAITING_APPROVAL while a human must decide.
    RUNNING = "RUNNING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # the tool or the model call failed (a tool's error is given to the model)
    REFUSED = "REFUSED"  # never run: not offered, invalid arguments, outside the permissions, delegation refused
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return STEP.is_terminal(self)


STEP: StateMachine[StepStatus] = StateMachine(
    "agent step",
    {
        StepStatus.RUNNING: frozenset(
            {StepStatus.AWAITING_APPROVAL, StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED}
        ),
        StepStatus.AWAITING_APPROVAL: frozenset({StepStatus.RUNNING, StepStatus.CANCELLED}),
        StepStatus.COMPLETED: frozenset(),
        StepStatus.FAILED: frozenset(),
        StepStatus.REFUSED: frozenset(),
        StepStatus.CANCELLED: frozenset(),
    },
)


class StepKind(enum.StrEnum):
    model = "model"  # a model call: an ActionRun of kind ``agent_model_call``
    tool = "tool"  # a tool call: an ActionRun of the tool's kind
    delegation = "delegation"  # call_agent: a child AgentRun


# Why a FAILED or CANCELLED run ended (stable codes; ``detail`` says it for humans).
REASONS = (
    "model_error",  # the model call failed on every provider, or was refused
    "tool_error",  # the model kept naming tools it was not offered or giving invalid arguments (3 retries)
    "budget_exceeded",  # permissions.max_cost_per_run reached before the next model call
    "cost_unknown",  # a model call's price is unknown and the run has a budget
    "tool_call_limit",  # more tool calls than VAI_AGENT_MAX_TOOL_CALLS
    "timeout",  # RUNNING longer than VAI_AGENT_TIMEOUT_S (waiting for a human does not count)
    "rejected",  # a human rejected a write tool's call
    "cancelled",  # cancelled on request (or its parent run was)
    "delegation_refused",  # a delegated run could not be started
    "no_model",  # the organization has no LLM connection that can serve the spec's model
)
