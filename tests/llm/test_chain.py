"""The provider fallback matrix, against the real OpenAI and Anthropic SDK clients on a loopback server."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

import pytest
from pydantic_ai.messages import ModelRequest, TextPart, ToolCallPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from tests.llm.fake_providers import INPUT_TOKENS, OUTPUT_TOKENS, FakeProviderServer
from virtuousai.llm.aliases import ModelSelection, resolve
from virtuousai.llm.chain import ModelChain, ModelChainError
from virtuousai.llm.providers import LLMConfigError, build_chain
from virtuousai.runtime.context import ResolvedConnection

PROMPT = [ModelRequest.user_text_prompt("How many orders yesterday?")]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "openai_compatible": "llama-local"}
FAST_TIMEOUT_S = 0.5
ANY_MODEL = ModelSelection(requested="test", models={}, use_connection_defaults=True)


def member(
    server: FakeProviderServer, provider: str, scenario: str, order: int, **config: Any
) -> tuple[str, ResolvedConnection]:
    """A connection whose provider behaves as ``scenario``; returns (tag, connection). Tags are unique per test."""
    tag = f"{provider}-{order}-{secrets.token_hex(3)}"
    base = (
        server.anthropic_base_url(tag, scenario) if provider == "anthropic" else server.openai_base_url(tag, scenario)
    )
    connection = ResolvedConnection(
        id=f"conn_{tag}",
        slug=tag,
        provider=provider,
        config={"base_url": base, "order": order, "models": [MODELS[provider]], **config},
        secrets={"api_key": "sk-test-not-real"},
    )
    return tag, connection


def chain_of(*connections: ResolvedConnection, timeout_s: float = 5.0) -> ModelChain:
    return build_chain(list(connections), ANY_MODEL, attempt_timeout_s=timeout_s)


async def test_falls_back_in_configured_order_until_one_answers(fake_llm: FakeProviderServer) -> None:
    primary, first = member(fake_llm, "openai", "status-500", order=1)
    secondary, second = member(fake_llm, "anthropic", "status-429", order=2)
    tertiary, third = member(fake_llm, "openai_compatible", "ok", order=3)
    async with chain_of(third, first, second) as chain:  # given out of order: config.order decides
        result = await chain.request(PROMPT)
    assert result.response.parts == [TextPart(f"Hello from {tertiary}")]
    assert [(a.provider, a.error_class, a.status_code, a.fell_back) for a in result.attempts] == [
        ("openai", "ModelServerError", 500, True),
        ("anthropic", "ModelRateLimitError", 429, True),
        ("openai_compatible", None, None, False),
    ]
    assert [len(fake_llm.requests_for(tag)) for tag in (primary, secondary, tertiary)] == [1, 1, 1]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("scenario", "error_class"),
    [
        ("status-500", "ModelServerError"),
        ("status-503", "ModelUnavailableError"),
        ("status-429", "ModelRateLimitError"),
        ("status-401", "ModelAuthenticationError"),
        ("malformed", "ModelAPIError"),
        ("hang", "ModelRequestTimeout"),
    ],
)
async def test_provider_failures_fall_back(
    fake_llm: FakeProviderServer, provider: str, scenario: str, error_class: str
) -> None:
    _, first = member(fake_llm, provider, scenario, order=1)
    secondary, second = member(fake_llm, "openai", "ok", order=2)
    async with chain_of(first, second, timeout_s=FAST_TIMEOUT_S) as chain:
        result = await chain.request(PROMPT)
    assert result.response.parts == [TextPart(f"Hello from {secondary}")]
    failed, answered = result.attempts
    assert (failed.error_class, failed.fell_back, answered.ok) == (error_class, True, True)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [400, 422])
async def test_request_errors_do_not_fall_back(fake_llm: FakeProviderServer, provider: str, status: int) -> None:
    _, first = member(fake_llm, provider, f"status-{status}", order=1)
    secondary, second = member(fake_llm, "openai", "ok", order=2)
    async with chain_of(first, second) as chain:
        with pytest.raises(ModelChainError) as caught:
            await chain.request(PROMPT)
    assert caught.value.exhausted is False
    assert [(a.status_code, a.fell_back) for a in caught.value.attempts] == [(status, False)]
    assert fake_llm.requests_for(secondary) == []


async def test_every_provider_failing_exhausts_the_chain(fake_llm: FakeProviderServer) -> None:
    _, first = member(fake_llm, "openai", "status-502", order=1)
    _, second = member(fake_llm, "anthropic", "status-529", order=2)
    async with chain_of(first, second) as chain:
        with pytest.raises(ModelChainError) as caught:
            await chain.request(PROMPT)
    assert caught.value.exhausted is True
    assert [a.error_class for a in caught.value.attempts] == ["ModelServerError", "ModelOverloadedError"]
    assert [a.fell_back for a in caught.value.attempts] == [True, False]


async def test_timeout_is_per_attempt(fake_llm: FakeProviderServer) -> None:
    _, first = member(fake_llm, "openai", "hang", order=1)
    _, second = member(fake_llm, "anthropic", "hang", order=2)
    async with chain_of(first, second, timeout_s=FAST_TIMEOUT_S) as chain:
        with pytest.raises(ModelChainError) as caught:
            await chain.request(PROMPT)
    for attempt in caught.value.attempts:  # each member got its own full timeout, and no more than that
        assert attempt.error_class == "ModelRequestTimeout"
        assert FAST_TIMEOUT_S * 1000 <= attempt.latency_ms < FAST_TIMEOUT_S * 1000 + 2000


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_tool_calls_come_back_parsed(fake_llm: FakeProviderServer, provider: str) -> None:
    _, only = member(fake_llm, provider, "tool", order=1)
    tool = ToolDefinition(
        name="lookup", parameters_json_schema={"type": "object", "properties": {"q": {"type": "string"}}}
    )
    async with chain_of(only) as chain:
        result = await chain.request(PROMPT, params=ModelRequestParameters(function_tools=[tool]))
    (part,) = result.response.parts
    assert isinstance(part, ToolCallPart)
    assert (part.tool_name, part.args_as_dict()) == ("lookup", {"q": "x"})


# --- usage and cost -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "input_price", "output_price"),
    [("openai", Decimal("0.15"), Decimal("0.60")), ("anthropic", Decimal("1.00"), Decimal("5.00"))],
)
async def test_usage_and_cost_are_recorded(
    fake_llm: FakeProviderServer, provider: str, input_price: Decimal, output_price: Decimal
) -> None:
    _, failing = member(fake_llm, "openai", "status-500", order=1)
    _, answering = member(fake_llm, provider, "ok", order=2)
    async with chain_of(failing, answering) as chain:
        result = await chain.request(PROMPT)
    failed, answered = result.attempts
    assert (failed.input_tokens, failed.output_tokens, failed.cost) == (0, 0, Decimal(0))
    assert (answered.input_tokens, answered.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    expected = (INPUT_TOKENS * input_price + OUTPUT_TOKENS * output_price) / 1_000_000
    assert answered.cost == expected
    assert answered.price_source == "package"
    assert result.cost == expected
    assert answered.connection_id == answering.id


async def test_unknown_price_is_unknown_not_zero(fake_llm: FakeProviderServer) -> None:
    _, local = member(fake_llm, "openai_compatible", "ok", order=1)
    async with chain_of(local) as chain:
        result = await chain.request(PROMPT)
    assert result.attempts[0].input_tokens == INPUT_TOKENS
    assert result.attempts[0].cost is None
    assert result.cost is None


async def test_connection_price_overrides_the_table(fake_llm: FakeProviderServer) -> None:
    _, priced = member(
        fake_llm, "openai", "ok", order=1, prices={"gpt-4o-mini": {"input_per_mtok": "1", "output_per_mtok": 2}}
    )
    async with chain_of(priced) as chain:
        result = await chain.request(PROMPT)
    assert result.attempts[0].cost == Decimal(INPUT_TOKENS * 1 + OUTPUT_TOKENS * 2) / 1_000_000
    assert result.attempts[0].price_source == "connection"


# --- streaming ----------------------------------------------------------------------------------------------------


async def collect_text(chain: ModelChain) -> tuple[str, Any]:
    chunks: list[str] = []
    async with chain.request_stream(PROMPT) as stream:
        async for event in stream:
            part = getattr(event, "part", None)
            delta = getattr(event, "delta", None)
            if event.event_kind == "part_start" and isinstance(part, TextPart):
                chunks.append(part.content)
            elif event.event_kind == "part_delta":
                chunks.append(getattr(delta, "content_delta", "") or "")
    return "".join(chunks), stream


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("scenario", ["error-before-first-token", "status-500", "hang"])
async def test_stream_falls_back_before_the_first_token(
    fake_llm: FakeProviderServer, provider: str, scenario: str
) -> None:
    _, first = member(fake_llm, provider, scenario, order=1)
    secondary, second = member(fake_llm, provider, "ok", order=2)
    async with chain_of(first, second, timeout_s=FAST_TIMEOUT_S) as chain:
        text, stream = await collect_text(chain)
    assert text == f"Hello from {secondary}"
    failed, answered = stream.attempts
    assert (failed.fell_back, failed.streamed, answered.ok) == (True, True, True)
    assert (answered.input_tokens, answered.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert answered.cost is not None and answered.cost > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_stream_that_dies_after_the_first_token_surfaces_the_error(
    fake_llm: FakeProviderServer, provider: str
) -> None:
    _, first = member(fake_llm, provider, "die-after-first-token", order=1)
    secondary, second = member(fake_llm, provider, "ok", order=2)
    received: list[str] = []
    async with chain_of(first, second) as chain:
        with pytest.raises(ModelChainError) as caught:
            async with chain.request_stream(PROMPT) as stream:
                async for event in stream:
                    received.append(event.event_kind)
    assert received[0] == "part_start"  # the caller saw the first token …
    assert caught.value.exhausted is False  # … so the chain did not switch provider
    assert [a.error_class is not None for a in caught.value.attempts] == [True]
    assert fake_llm.requests_for(secondary) == []


# --- building the chain from connections and aliases ---------------------------------------------------------------


async def test_alias_picks_a_model_per_provider_and_skips_unmapped_connections(fake_llm: FakeProviderServer) -> None:
    _, openai = member(fake_llm, "openai", "ok", order=2)
    _, anthropic = member(fake_llm, "anthropic", "ok", order=1)
    selection = resolve("fast", {"fast": {"openai": "gpt-4.1-mini"}})  # anthropic keeps its own config.model
    async with build_chain([openai, anthropic], selection) as chain:
        assert [(m.provider, m.model_name) for m in chain.members] == [
            ("anthropic", "claude-haiku-4-5"),
            ("openai", "gpt-4.1-mini"),
        ]
    pinned = resolve("openai:gpt-4o", {})
    async with build_chain([openai, anthropic], pinned) as chain:
        assert [(m.provider, m.model_name) for m in chain.members] == [("openai", "gpt-4o")]


def test_no_connection_for_the_model_is_a_clear_error(fake_llm: FakeProviderServer) -> None:
    _, openai = member(fake_llm, "openai", "ok", order=1)
    with pytest.raises(LLMConfigError, match="anthropic:claude"):
        build_chain([openai], resolve("anthropic:claude-haiku-4-5", {}))
    missing_url = ResolvedConnection(id="conn_x", slug="x", provider="openai_compatible", config={}, secrets={})
    with pytest.raises(LLMConfigError, match=r"config\.base_url"):
        build_chain([missing_url], ANY_MODEL)
