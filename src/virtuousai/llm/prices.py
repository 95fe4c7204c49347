"""What a model call cost, in USD, from a price table per model.

Three sources, strongest first:

1. the connection's own ``config.prices`` (``{"<model>": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}``),
   for negotiated rates and local servers;
2. ``prices.json`` beside this module, which we maintain;
3. genai-prices (a pydantic-ai dependency), for the OpenAI and Anthropic models our file does not list.

A price we do not know is reported as unknown (``None``), never as zero: a budget (``max_cost_per_run``) must be
able to tell "free" from "we cannot say". A call that used no tokens at all costs zero whatever the price, since
providers do not bill a request they refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic_ai.usage import RequestUsage

PER_MILLION = Decimal(1_000_000)
WILDCARD = "*"
# The providers genai-prices knows under the same names we use.
GENAI_PRICES_PROVIDERS = frozenset({"openai", "anthropic"})

PriceSource = Literal["connection", "package", "genai-prices"]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. Cache prices default to the input price (what providers charge without a discount)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    source: PriceSource = "package"

    def cost(self, usage: RequestUsage) -> Decimal:
        # pydantic-ai's input_tokens includes the cached tokens; price them at their own rate.
        uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
        total = (
            uncached * self.input
            + usage.cache_read_tokens * (self.cache_read if self.cache_read is not None else self.input)
            + usage.cache_write_tokens * (self.cache_write if self.cache_write is not None else self.input)
            + usage.output_tokens * self.output
        )
        return total / PER_MILLION


PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")


def parse_price(data: Mapping[str, Any], *, source: PriceSource, strict: bool = True) -> ModelPrice:
    """``{"input_per_mtok": …, "output_per_mtok": …, "cache_read_per_mtok"?: …, "cache_write_per_mtok"?: …}``.

    Numbers or numeric strings, >= 0. ``strict`` refuses other keys (our own file); a connection's config may carry
    extra keys (the connections API allows them), which are ignored.
    """

    def amount(key: str, *, required: bool) -> Decimal | None:
        raw = data.get(key)
        if raw is None:
            if required:
                raise ValueError(f"price needs {key!r} (USD per million tokens)")
            return None
        try:
            value = Decimal(str(raw))
        except InvalidOperation as exc:
            raise ValueError(f"price {key!r} is not a number: {raw!r}") from exc
        if not value.is_finite() or value < 0:
            raise ValueError(f"price {key!r} must be a finite number >= 0, got {raw!r}")
        return value

    unknown = set(data) - set(PRICE_FIELDS)
    if strict and unknown:
        raise ValueError(f"unknown price fields: {', '.join(sorted(unknown))}")
    input_price = amount("input_per_mtok", required=True)
    output_price = amount("output_per_mtok", required=True)
    assert input_price is not None and output_price is not None
    return ModelPrice(
        input=input_price,
        output=output_price,
        cache_read=amount("cache_read_per_mtok", required=False),
        cache_write=amount("cache_write_per_mtok", required=False),
        source=source,
    )


class PriceTable:
    """Prices per ``(provider, model)``; a provider may price every model alike with the ``"*"`` entry."""

    def __init__(self, prices: Mapping[str, Mapping[str, ModelPrice]]) -> None:
        self._prices = {provider: dict(models) for provider, models in prices.items()}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, source: PriceSource) -> PriceTable:
        providers = data.get("providers", {})
        return cls(
            {
                provider: {model: parse_price(price, source=source) for model, price in models.items()}
                for provider, models in providers.items()
            }
        )

    def lookup(self, provider: str, model: str) -> ModelPrice | None:
        models = self._prices.get(provider, {})
        return models.get(model) or models.get(WILDCARD)


@cache
def packaged_prices() -> PriceTable:
    text = resources.files("virtuousai.llm").joinpath("prices.json").read_text(encoding="utf-8")
    return PriceTable.from_data(json.loads(text), source="package")


def connection_prices(config: Mapping[str, Any]) -> dict[str, ModelPrice]:
    """A connection's ``config.prices`` overrides; raises ``ValueError`` naming the bad entry."""
    raw = config.get("prices") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("config.prices must map model names to prices")
    prices: dict[str, ModelPrice] = {}
    for model, price in raw.items():
        if not isinstance(price, Mapping):
            raise ValueError(f"config.prices.{model} must be an object")
        try:
            prices[str(model)] = parse_price(price, source="connection", strict=False)
        except ValueError as exc:
            raise ValueError(f"config.prices.{model}: {exc}") from exc
    return prices


@dataclass(frozen=True)
class Pricing:
    """How one chain member's calls are priced: a fixed price, or genai-prices per call, or unknown."""

    provider: str
    model: str
    price: ModelPrice | None
    use_genai_prices: bool

    def cost(self, usage: RequestUsage) -> Decimal | None:
        if usage.unmeasured_requests:
            return None  # the provider did not report what it used
        if usage.input_tokens == 0 and usage.output_tokens == 0:
            return Decimal(0)
        if self.price is not None:
            return self.price.cost(usage)
        if self.use_genai_prices:
            return _genai_price(usage, self.model, self.provider)
        return None

    @property
    def source(self) -> PriceSource | None:
        if self.price is not None:
            return self.price.source
        return "genai-prices" if self.use_genai_prices else None


def pricing_for(
    provider: str, model: str, overrides: Mapping[str, ModelPrice] | None = None, table: PriceTable | None = None
) -> Pricing:
    override = (overrides or {}).get(model) or (overrides or {}).get(WILDCARD)
    price = override or (table or packaged_prices()).lookup(provider, model)
    use_genai = price is None and provider in GENAI_PRICES_PROVIDERS and _genai_knows(model, provider)
    return Pricing(provider=provider, model=model, price=price, use_genai_prices=use_genai)


def _genai_knows(model: str, provider: str) -> bool:
    return _genai_price(RequestUsage(input_tokens=1), model, provider) is not None


def _genai_price(usage: RequestUsage, model: str, provider: str) -> Decimal | None:
    from genai_prices import calc_price

    try:
        return calc_price(usage, model, provider_id=provider).total_price
    except LookupError:
        return None
