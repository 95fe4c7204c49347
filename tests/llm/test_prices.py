"""Cost per call: our table, connection overrides, genai-prices as a fallback, and unknown stays unknown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic_ai.usage import RequestUsage

from virtuousai.llm.prices import connection_prices, packaged_prices, pricing_for

MILLION_EACH = RequestUsage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_the_packaged_table_prices_known_models() -> None:
    pricing = pricing_for("openai", "gpt-4.1-mini")
    assert pricing.source == "package"
    assert pricing.cost(MILLION_EACH) == Decimal("2.00")  # 0.40 in + 1.60 out


def test_cached_tokens_are_priced_at_their_own_rate() -> None:
    usage = RequestUsage(input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=0)
    # 600k uncached at 3.00 + 400k cached at 0.30
    assert pricing_for("anthropic", "claude-sonnet-4-5").cost(usage) == Decimal("1.8") + Decimal("0.12")


def test_a_connection_override_wins() -> None:
    overrides = connection_prices(
        {"prices": {"gpt-4.1-mini": {"input_per_mtok": 0, "output_per_mtok": "0.5", "note": "ok"}}}
    )
    pricing = pricing_for("openai", "gpt-4.1-mini", overrides)
    assert pricing.source == "connection"
    assert pricing.cost(MILLION_EACH) == Decimal("0.5")


def test_genai_prices_fills_in_for_models_we_do_not_list() -> None:
    assert packaged_prices().lookup("openai", "gpt-4o-2024-08-06") is None
    pricing = pricing_for("openai", "gpt-4o-2024-08-06")
    assert pricing.source == "genai-prices"
    cost = pricing.cost(MILLION_EACH)
    assert cost is not None and cost > 0


def test_unknown_is_none_but_nothing_used_costs_nothing() -> None:
    pricing = pricing_for("openai_compatible", "llama3.1:8b")
    assert pricing.source is None
    assert pricing.cost(RequestUsage(input_tokens=10, output_tokens=5)) is None
    assert pricing.cost(RequestUsage()) == Decimal(0)
    # A response that omitted its usage: the tokens are unknown, so is the cost.
    assert pricing_for("openai", "gpt-4.1").cost(RequestUsage(unmeasured_requests=1)) is None


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"m": {"output_per_mtok": 1}}, "needs 'input_per_mtok'"),
        ({"m": {"input_per_mtok": -1, "output_per_mtok": 1}}, ">= 0"),
        ({"m": {"input_per_mtok": "cheap", "output_per_mtok": 1}}, "not a number"),
        ({"m": 3}, "must be an object"),
    ],
)
def test_bad_overrides_are_refused_with_their_path(prices: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connection_prices({"prices": prices})
