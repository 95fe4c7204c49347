"""Building pydantic-ai models from an organization's LLM connections.

This module reads ``ResolvedConnection`` only (id, slug, provider, config, decrypted secrets), so it does not
depend on how connections are stored. What it reads:

| provider            | secrets            | config                                                                |
|---------------------|--------------------|-----------------------------------------------------------------------|
| ``openai``          | ``api_key``        | ``base_url`` (optional, e.g. a proxy)                                 |
| ``anthropic``       | ``api_key``        | ``base_url`` (optional)                                               |
| ``openai_compatible`` | ``api_key`` (opt.) | ``base_url`` (required: Ollama, vLLM, LM Studio, a gateway)         |
| ``scripted``        | none               | ``turns`` (required: the script, ``llm/scripted.py``), offline, free  |

and, for every provider: ``order`` (or ``priority``; lower is tried first: primary, secondary, tertiary),
``models`` (the model names it offers; the first is the one it serves when an alias does not name one for it;
``model`` is accepted too), ``timeout_s`` (per attempt),
``max_retries`` (the SDK's own retries; default 0, since the chain falls back instead) and ``prices``
(see ``prices.py``).

SDK clients are created here (not by pydantic-ai's providers) so that the timeout and retries are ours. They share
one HTTP connection pool per SDK and event loop (``shared_http_client``): building an SDK client with its own pool
costs ~125 ms on this machine (its TLS context), which an agent run would pay on every model call; with the shared
pool it costs under a millisecond (measured, docs/agents.md). The pool outlives the chains; the process closes it.

The SDKs are imported when a chain first needs one, not with this module: ``anthropic`` and ``openai`` (with
pydantic-ai's models for them) take ~2.2 s to import here, which every worker and server start would pay, and
every process that never calls a model (a worker running only extracts, the CLI) pays nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import ValidationError
from pydantic_ai.models import Model

from virtuousai.connections.providers import ScriptedConfig
from virtuousai.llm.aliases import ModelSelection
from virtuousai.llm.chain import DEFAULT_ATTEMPT_TIMEOUT_S, ChainMember, ModelChain
from virtuousai.llm.prices import ModelPrice, connection_prices, pricing_for
from virtuousai.llm.scripted import ScriptedModel, Turn
from virtuousai.runtime.context import ResolvedConnection

if TYPE_CHECKING:
    import anthropic
    import openai

    HttpPool: TypeAlias = openai.DefaultAsyncHttpxClient | anthropic.DefaultAsyncHttpxClient

LLM_PROVIDERS = ("openai", "anthropic", "openai_compatible", "scripted")
DEFAULT_ORDER = 100
# Local OpenAI-compatible servers usually ignore the key, but the SDK insists on one.
KEYLESS_PLACEHOLDER = "not-needed"


class LLMConfigError(ValueError):
    """A connection's LLM settings cannot be used; the message names the connection and the field."""


@dataclass(frozen=True)
class LLMConnection:
    """The LLM-relevant part of one connection, checked."""

    id: str
    slug: str | None
    provider: str
    order: int
    base_url: str | None
    api_key: str | None = field(repr=False)
    default_model: str | None
    timeout_s: float | None
    max_retries: int
    prices: Mapping[str, ModelPrice]
    turns: tuple[Turn, ...] = ()  # the scripted provider's script

    @property
    def name(self) -> str:
        return self.slug or self.id


def read_llm_connection(connection: ResolvedConnection) -> LLMConnection:
    config: Mapping[str, Any] = connection.config
    where = f"connection {connection.slug or connection.id}"
    if connection.provider not in LLM_PROVIDERS:
        raise LLMConfigError(f"{where}: provider {connection.provider!r} is not an LLM provider")

    def number(key: str, kind: type[int] | type[float], default: Any) -> Any:
        raw = config.get(key, default)
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            raise LLMConfigError(f"{where}: config.{key} must be a number >= 0")
        return kind(raw)

    order = number("order", int, config.get("priority", DEFAULT_ORDER))
    base_url = config.get("base_url") or None
    if connection.provider == "openai_compatible" and not base_url:
        raise LLMConfigError(f"{where}: config.base_url is required for an OpenAI-compatible server")
    api_key = connection.secrets.get("api_key") or None
    if connection.provider in ("openai", "anthropic") and not api_key:
        raise LLMConfigError(f"{where}: secrets.api_key is required for {connection.provider}")
    try:
        prices = connection_prices(config)
    except ValueError as exc:
        raise LLMConfigError(f"{where}: {exc}") from exc
    turns = _script(config, where) if connection.provider == "scripted" else ()
    # ``models``: the names this connection offers, the first is its default (the connections API's field).
    offered = config.get("models") or []
    model = config.get("model") or (offered[0] if isinstance(offered, list) and offered else None)
    return LLMConnection(
        id=connection.id,
        slug=connection.slug,
        provider=connection.provider,
        order=order,
        base_url=str(base_url) if base_url else None,
        api_key=str(api_key) if api_key else None,
        default_model=str(model) if model else None,
        timeout_s=number("timeout_s", float, None),
        max_retries=number("max_retries", int, 0),
        prices=prices,
        turns=turns,
    )


def _script(config: Mapping[str, Any], where: str) -> tuple[Turn, ...]:
    """The scripted provider's turns, checked by the connection catalog's own model (a stored row may predate a
    rule): the same errors as when the connection was created."""
    try:
        script = ScriptedConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LLMConfigError(f"{where}: {problems}") from exc
    return tuple(Turn.from_data(turn.model_dump(exclude_none=True)) for turn in script.turns)


def ordered(connections: Sequence[LLMConnection]) -> list[LLMConnection]:
    """Primary first: by ``order``, then by name so equal orders are still deterministic."""
    return sorted(connections, key=lambda c: (c.order, c.name, c.id))


SDK = Literal["openai", "anthropic"]
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[SDK, HttpPool]] = weakref.WeakKeyDictionary()


def shared_http_client(sdk: SDK) -> HttpPool:
    """This event loop's HTTP pool for the SDK's clients (with the SDK's own defaults). Each request still carries
    its client's timeout; closing an SDK client would close the pool, so the chains never do."""
    pools = _shared.setdefault(asyncio.get_running_loop(), {})
    client = pools.get(sdk)
    if client is None or client.is_closed:
        if sdk == "anthropic":
            import anthropic

            client = anthropic.DefaultAsyncHttpxClient()
        else:
            import openai

            client = openai.DefaultAsyncHttpxClient()
        pools[sdk] = client
    return client


async def close_shared_http_clients() -> None:
    """Close this event loop's pools (a process that stops)."""
    for client in _shared.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


def build_model(connection: LLMConnection, model_name: str, *, timeout_s: float, resources: AsyncExitStack) -> Model:
    """A pydantic-ai model for ``model_name`` on this connection, on the shared HTTP pool (``resources`` is the
    chain's, for anything a model must close)."""
    if connection.provider == "scripted":
        # Built afresh for each chain: it picks its turn from the conversation, so nothing is lost between calls.
        return ScriptedModel(connection.turns, model_name=model_name)
    if connection.provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        anthropic_client = AsyncAnthropic(
            api_key=connection.api_key,
            base_url=connection.base_url,
            max_retries=connection.max_retries,
            timeout=timeout_s,
            http_client=shared_http_client("anthropic"),
        )
        return AnthropicModel(model_name, provider=AnthropicProvider(anthropic_client=anthropic_client))
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

    openai_client = AsyncOpenAI(
        api_key=connection.api_key or KEYLESS_PLACEHOLDER,
        base_url=connection.base_url,
        max_retries=connection.max_retries,
        timeout=timeout_s,
        http_client=shared_http_client("openai"),
    )
    if connection.provider == "openai":
        return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=openai_client))
    return OpenAIChatModel(
        model_name,
        provider=OpenAICompatibleProvider(connection.slug or "openai_compatible", openai_client=openai_client),
    )


def plan_members(connections: Sequence[LLMConnection], selection: ModelSelection) -> list[tuple[LLMConnection, str]]:
    """Which connection serves which model, primary first. A connection the selection has no model for is skipped."""
    plan: list[tuple[LLMConnection, str]] = []
    for connection in ordered(connections):
        model = selection.model_for(connection.provider, connection.slug, connection.default_model)
        if model is not None:
            plan.append((connection, model))
    return plan


def build_chain(
    connections: Sequence[ResolvedConnection],
    selection: ModelSelection,
    *,
    attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
) -> ModelChain:
    """The chain for one model selection over the organization's LLM connections (non-LLM ones are ignored).

    Raises ``LLMConfigError`` when a connection's settings are unusable or no connection can serve the selection.
    """
    llm = [read_llm_connection(c) for c in connections if c.provider in LLM_PROVIDERS]
    plan = plan_members(llm, selection)
    if not plan:
        providers = ", ".join(sorted({c.slug or c.provider for c in llm})) or "none"
        raise LLMConfigError(
            f"no LLM connection can serve model {selection.requested!r} (LLM connections: {providers})"
        )
    resources = AsyncExitStack()
    members = []
    for connection, model_name in plan:
        timeout_s = connection.timeout_s or attempt_timeout_s
        members.append(
            ChainMember(
                model=build_model(connection, model_name, timeout_s=timeout_s, resources=resources),
                provider=connection.provider,
                model_name=model_name,
                pricing=pricing_for(connection.provider, model_name, connection.prices),
                connection_id=connection.id,
                connection_slug=connection.slug,
                timeout_s=connection.timeout_s,
            )
        )
    return ModelChain(members, attempt_timeout_s=attempt_timeout_s, resources=resources)
