"""``agent_model_call``: one model call of an agent run, as an ActionRun a worker executes (its step's child).

Why an ActionRun: the call then gets everything a tool call gets — a lease, a heartbeat, cancellation, a timeout,
the watchdog's recovery when its worker dies (the call is made again by another worker; it has no side effect) —
and the agent run moves on it exactly as on a tool call, through the one orchestration mechanism. Its inputs are the
whole request (the conversation so far, the offered tools, the organization's model selection and its LLM
connections), so each step records what the model was asked, and the call needs nothing but its context.

The answer is streamed: the model's text is emitted as ``narration`` progress events of this ActionRun while it
arrives (a few per second at most), and the agent run's event stream interleaves them with its own events.
The output is the response as pydantic-ai's message JSON, with every attempt the chain made and their cost.
A call every provider refused raises ``ModelCallFailed``, whose error keeps the attempts (their cost counts
against the run's budget) and is not retried by the runtime (the chain already fell back).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from virtuousai.llm.aliases import ModelSelection
from virtuousai.llm.chain import Attempt, ModelChainError, total_cost
from virtuousai.llm.providers import LLMConfigError, build_chain
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind

MODEL_CALL_KIND = "agent_model_call"
NARRATION_EVENT = "narration"
# Narration is flushed when this much text waited, or this long: streamed, without an event per token.
NARRATION_CHARS = 200
NARRATION_S = 0.25


class Selection(BaseModel):
    requested: str
    models: dict[str, str]
    use_connection_defaults: bool


class OfferedTool(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]


class ModelCallInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_run_id: str
    step_id: str
    connections: list[str] = Field(description="The organization's LLM connections (the chain orders them).")
    selection: Selection
    messages: list[dict[str, Any]] = Field(description="The conversation so far, pydantic-ai's message JSON.")
    tools: list[OfferedTool] = Field(default_factory=list)


class ModelCallOutput(BaseModel):
    response: dict[str, Any]
    attempts: list[dict[str, Any]]
    cost: str | None = Field(description="USD, the sum of every attempt; null when a price is unknown.")
    input_tokens: int
    output_tokens: int


class ModelCallFailed(Exception):
    """No provider answered (or one refused the request): the run fails ``model_error``."""

    error_type = "model_error"
    retryable = False

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        cost = total_cost(attempts)
        self.error_details = {
            "attempts": [attempt.as_dict() for attempt in attempts],
            "cost": None if cost is None else str(cost),
            "input_tokens": sum(attempt.input_tokens for attempt in attempts),
            "output_tokens": sum(attempt.output_tokens for attempt in attempts),
        }


class Narration:
    """The model's text as it streams, emitted in chunks as progress events of the call's ActionRun."""

    def __init__(self, ctx: ActionContext, step_id: str) -> None:
        self.ctx = ctx
        self.step_id = step_id
        self.pending = ""
        self.sent_at = time.monotonic()
        self.chunks = 0

    async def add(self, text: str) -> None:
        self.pending += text
        if len(self.pending) >= NARRATION_CHARS or time.monotonic() - self.sent_at >= NARRATION_S:
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        await self.ctx.emit(NARRATION_EVENT, {"step_id": self.step_id, "chunk": self.chunks, "text": self.pending})
        self.pending, self.chunks, self.sent_at = "", self.chunks + 1, time.monotonic()


@action_kind(
    MODEL_CALL_KIND,
    risk="read",
    description="One model call of an agent run (made by the agent runtime, never directly).",
    timeout_s=540,
    retry=RetryPolicy(max_attempts=3, backoff_s=1.0),
    internal=True,
)
async def agent_model_call(ctx: ActionContext, inputs: ModelCallInput) -> ModelCallOutput:
    resolved = [await ctx.connection(connection_id) for connection_id in inputs.connections]
    selection = ModelSelection(**inputs.selection.model_dump())
    try:
        chain = build_chain(resolved, selection)
    except LLMConfigError as exc:
        raise ModelCallFailed(str(exc), []) from None
    messages = ModelMessagesTypeAdapter.validate_python(inputs.messages)
    tools = [
        ToolDefinition(name=t.name, description=t.description, parameters_json_schema=t.parameters)
        for t in inputs.tools
    ]
    params = ModelRequestParameters(function_tools=tools, allow_text_output=True)
    narration = Narration(ctx, inputs.step_id)
    async with chain:
        try:
            async with chain.request_stream(messages, params=params) as stream:
                async for event in stream:
                    ctx.cancel.raise_if_cancelled()
                    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                        await narration.add(event.part.content)
                    elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                        await narration.add(event.delta.content_delta)
                response = stream.get()
            attempts = stream.attempts
        except ModelChainError as exc:
            raise ModelCallFailed(str(exc), exc.attempts) from None
    await narration.flush()
    cost: Decimal | None = total_cost(attempts)
    return ModelCallOutput(
        response=ModelMessagesTypeAdapter.dump_python([response], mode="json")[0],
        attempts=[attempt.as_dict() for attempt in attempts],
        cost=None if cost is None else str(cost),
        input_tokens=sum(attempt.input_tokens for attempt in attempts),
        output_tokens=sum(attempt.output_tokens for attempt in attempts),
    )
