"""The scripted offline model: plays back a fixed conversation, for tests and the offline demo.

A script is a list of turns. Each turn is what the model answers to one request: text, tool calls, or both. The
turn is chosen from the conversation the model is given, never from what this object remembers: a request whose
messages already hold ``n`` model responses gets turn ``n``. So a retried request gets the same answer, and a model
built afresh for each request (an agent run's model calls are separate ActionRuns, maybe in separate processes; the
``scripted`` LLM connection builds one per call) carries the conversation on where it stands. Before answering, the
model checks the conversation is the one the script was written for, and fails loudly (``ScriptDiverged``) when it
is not:

- every tool call of the latest model response must have come back (a tool return or a retry prompt with its id);
- a turn's ``expect_prompt`` must appear in the latest user prompt;
- a request after the last turn is a divergence too.

``assert_exhausted()`` (or ``with model.played():``) fails when turns were left unplayed by this object, so a test
cannot pass while the agent stopped early.

Built on pydantic-ai's ``FunctionModel``, so it streams and reports (estimated) usage like a real model. Its price is
zero (``prices.json``: provider ``scripted``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from virtuousai.llm.chain import DEFAULT_ATTEMPT_TIMEOUT_S, ChainMember, ModelChain
from virtuousai.llm.prices import pricing_for

PROVIDER = "scripted"


class ScriptDiverged(AssertionError):
    """The conversation is not the one the script was written for."""


class ScriptNotExhausted(AssertionError):
    """The conversation ended with turns of the script left unplayed."""


@dataclass(frozen=True)
class ToolCall:
    tool: str
    args: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None


@dataclass(frozen=True)
class Turn:
    """One model answer. ``expect_prompt``: text the latest user prompt must contain for this turn to apply."""

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    expect_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.text is None and not self.tool_calls:
            raise ValueError("a scripted turn needs text, tool calls, or both")

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Turn:
        """``{"text"?: str, "tool_calls"?: [{"tool": str, "args"?: {}}], "expect_prompt"?: str}``."""
        unknown = set(data) - {"text", "tool_calls", "expect_prompt"}
        if unknown:
            raise ValueError(f"unknown fields in scripted turn: {', '.join(sorted(unknown))}")
        calls = [
            ToolCall(tool=c["tool"], args=c.get("args") or {}, call_id=c.get("id")) for c in data.get("tool_calls", [])
        ]
        return cls(text=data.get("text"), tool_calls=tuple(calls), expect_prompt=data.get("expect_prompt"))


def _latest_user_prompt(messages: Sequence[ModelMessage]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    return part.content if isinstance(part.content, str) else str(part.content)
    return None


def _tool_calls_awaiting_results(messages: Sequence[ModelMessage]) -> list[str]:
    """The ids of the latest model response's tool calls that no later request answered."""
    for position in range(len(messages) - 1, -1, -1):
        response = messages[position]
        if isinstance(response, ModelResponse):
            answered = {
                part.tool_call_id
                for request in messages[position + 1 :]
                if isinstance(request, ModelRequest)
                for part in request.parts
                if isinstance(part, ToolReturnPart | RetryPromptPart)
            }
            calls = [part.tool_call_id for part in response.parts if isinstance(part, ToolCallPart)]
            return [call_id for call_id in calls if call_id not in answered]
    return []


class ScriptedModel(FunctionModel):
    def __init__(self, turns: Sequence[Turn | Mapping[str, Any]], *, model_name: str = "scripted") -> None:
        self.turns = [t if isinstance(t, Turn) else Turn.from_data(t) for t in turns]
        # For ``assert_exhausted`` only: how far this object got (the turn itself comes from the conversation).
        self.played_count = 0
        super().__init__(self._answer, stream_function=self._stream, model_name=model_name)

    @property
    def remaining(self) -> int:
        return len(self.turns) - self.played_count

    def assert_exhausted(self) -> None:
        if self.remaining:
            raise ScriptNotExhausted(
                f"{self.remaining} of {len(self.turns)} scripted turns were not played "
                f"(next: {self.turns[self.played_count]!r})"
            )

    @contextmanager
    def played(self) -> Iterator[ScriptedModel]:
        """``with model.played(): …`` fails on exit if the script was not used up (unless the body raised)."""
        yield self
        self.assert_exhausted()

    def as_chain(self) -> ModelChain:
        member = ChainMember(
            model=self, provider=PROVIDER, model_name=self.model_name, pricing=pricing_for(PROVIDER, self.model_name)
        )
        return ModelChain([member], attempt_timeout_s=DEFAULT_ATTEMPT_TIMEOUT_S, resources=AsyncExitStack())

    def _next_turn(self, messages: list[ModelMessage]) -> tuple[int, Turn]:
        index = sum(1 for message in messages if isinstance(message, ModelResponse))
        if index >= len(self.turns):
            raise ScriptDiverged(
                f"the conversation holds {index} model responses and the script has {len(self.turns)} turns, "
                "but the model was asked for one more"
            )
        missing = _tool_calls_awaiting_results(messages)
        if missing:
            raise ScriptDiverged(f"turn {index}: expected the results of tool calls {missing} before this request")
        turn = self.turns[index]
        if turn.expect_prompt is not None:
            prompt = _latest_user_prompt(messages) or ""
            if turn.expect_prompt not in prompt:
                raise ScriptDiverged(
                    f"turn {index}: expected a user prompt containing {turn.expect_prompt!r}, got {prompt!r}"
                )
        self.played_count = max(self.played_count, index + 1)
        return index, turn

    def _parts(self, index: int, turn: Turn) -> list[ModelResponsePart]:
        parts: list[ModelResponsePart] = []
        if turn.text is not None:
            parts.append(TextPart(turn.text))
        for n, call in enumerate(turn.tool_calls):
            parts.append(ToolCallPart(call.tool, dict(call.args), tool_call_id=call.call_id or f"call_{index}_{n}"))
        return parts

    async def _answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        index, turn = self._next_turn(messages)
        return ModelResponse(parts=self._parts(index, turn), model_name=self.model_name)

    async def _stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        index, turn = self._next_turn(messages)
        if turn.text is not None:
            words = turn.text.split(" ")
            for n, word in enumerate(words):
                yield word if n == 0 else " " + word
        if turn.tool_calls:
            yield {
                n: DeltaToolCall(
                    name=call.tool,
                    json_args=json.dumps(dict(call.args)),
                    tool_call_id=call.call_id or f"call_{index}_{n}",
                )
                for n, call in enumerate(turn.tool_calls)
            }
