"""The scripted offline model: plays back its script, and fails loudly when the conversation leaves it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from virtuousai.llm.scripted import ScriptDiverged, ScriptedModel, ScriptNotExhausted

SCRIPT = [
    {"expect_prompt": "orders", "tool_calls": [{"tool": "generate_query", "args": {"question": "orders yesterday"}}]},
    {"text": "There were 42 orders yesterday."},
]


def tool_return_for(call: ToolCallPart, content: str = "42") -> ModelRequest:
    return ModelRequest(parts=[ToolReturnPart(call.tool_name, content, tool_call_id=call.tool_call_id)])


async def test_plays_back_tool_calls_and_text_through_the_chain() -> None:
    model = ScriptedModel(SCRIPT)
    history: list[ModelMessage] = [ModelRequest.user_text_prompt("How many orders yesterday?")]
    with model.played():
        async with model.as_chain() as chain:
            first = await chain.request(history)
            (call,) = first.response.parts
            assert isinstance(call, ToolCallPart)
            assert (call.tool_name, call.args_as_dict()) == ("generate_query", {"question": "orders yesterday"})
            history += [first.response, tool_return_for(call)]
            second = await chain.request(history)
    assert second.response.parts == [TextPart("There were 42 orders yesterday.")]
    assert second.attempts[0].provider == "scripted"
    assert second.cost == Decimal(0)  # offline and free, known to be zero


async def test_a_missing_tool_return_is_a_divergence() -> None:
    model = ScriptedModel(SCRIPT)
    history: list[ModelMessage] = [ModelRequest.user_text_prompt("How many orders yesterday?")]
    async with model.as_chain() as chain:
        first = await chain.request(history)
        history += [first.response, ModelRequest(parts=[UserPromptPart("never mind")])]
        with pytest.raises(ScriptDiverged, match="results of tool calls"):
            await chain.request(history)


async def test_an_unexpected_prompt_is_a_divergence() -> None:
    model = ScriptedModel(SCRIPT)
    async with model.as_chain() as chain:
        with pytest.raises(ScriptDiverged, match="orders"):
            await chain.request([ModelRequest.user_text_prompt("What is the weather?")])


async def test_a_request_past_the_end_is_a_divergence() -> None:
    model = ScriptedModel([{"text": "done"}])
    prompt: list[ModelMessage] = [ModelRequest.user_text_prompt("hi")]
    async with model.as_chain() as chain:
        first = await chain.request(prompt)
        with pytest.raises(ScriptDiverged, match="one more"):
            await chain.request([*prompt, first.response, ModelRequest.user_text_prompt("and then?")])


async def test_the_turn_comes_from_the_conversation_not_from_the_model_object() -> None:
    # An agent run's model calls are separate ActionRuns (maybe in separate processes, maybe retried): each builds
    # its own model, and the same conversation must get the same turn.
    history: list[ModelMessage] = [ModelRequest.user_text_prompt("How many orders yesterday?")]
    async with ScriptedModel(SCRIPT).as_chain() as chain:
        first = await chain.request(history)
        again = await chain.request(history)  # a retried call
    assert again.response.parts == first.response.parts
    (call,) = first.response.parts
    assert isinstance(call, ToolCallPart)
    fresh = ScriptedModel(SCRIPT)  # another process, half way through the conversation
    async with fresh.as_chain() as chain:
        second = await chain.request([*history, first.response, tool_return_for(call)])
    assert second.response.parts == [TextPart("There were 42 orders yesterday.")]
    fresh.assert_exhausted()


async def test_streams_text_and_tool_calls_of_one_turn() -> None:
    model = ScriptedModel([{"text": "Let me look.", "tool_calls": [{"tool": "lookup", "args": {"q": "x"}}]}])
    async with model.as_chain() as chain, chain.request_stream([ModelRequest.user_text_prompt("look")]) as stream:
        _ = [event async for event in stream]
    text, call = stream.get().parts
    assert text == TextPart("Let me look.")
    assert isinstance(call, ToolCallPart) and (call.tool_name, call.args_as_dict()) == ("lookup", {"q": "x"})


async def test_an_unused_script_fails_on_exit() -> None:
    model = ScriptedModel(SCRIPT)
    async with model.as_chain() as chain:
        await chain.request([ModelRequest.user_text_prompt("orders?")])
    with pytest.raises(ScriptNotExhausted, match="1 of 2"):
        model.assert_exhausted()
    with pytest.raises(ScriptNotExhausted), model.played():
        pass


async def test_streams_text_and_tool_calls() -> None:
    model = ScriptedModel(SCRIPT)
    history: list[ModelMessage] = [ModelRequest.user_text_prompt("orders yesterday?")]
    async with model.as_chain() as chain:
        async with chain.request_stream(history) as stream:
            _ = [event async for event in stream]
        response = stream.get()
        (call,) = response.parts
        assert isinstance(call, ToolCallPart) and call.args_as_dict() == {"question": "orders yesterday"}
        history += [response, tool_return_for(call)]
        async with chain.request_stream(history) as stream:
            _ = [event async for event in stream]
    assert stream.get().parts == [TextPart("There were 42 orders yesterday.")]
    model.assert_exhausted()


def test_a_turn_needs_something_to_say() -> None:
    with pytest.raises(ValueError, match="text, tool calls"):
        ScriptedModel([{}])
    with pytest.raises(ValueError, match="unknown fields"):
        ScriptedModel([{"txt": "typo"}])
