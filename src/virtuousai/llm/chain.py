"""``ModelChain``: one model request, tried on each provider in order until one answers.

Each member is a pydantic-ai ``Model`` (OpenAI, Anthropic, any OpenAI-compatible server, or the scripted offline
model), called through ``pydantic_ai.direct`` so request preparation and deadlines are pydantic-ai's own. What the
chain adds:

- the order and the fallback rule (``policy.falls_back``: provider failures move on, request errors stop);
- a per-attempt timeout, given to pydantic-ai as ``request_timeout`` (``first_event_timeout`` when streaming), so a
  hanging provider raises ``ModelRequestTimeout`` and the next member gets its own full timeout;
- an ``Attempt`` record for every try: provider, model, connection, latency, tokens in and out, cost, error class;
- streaming that falls back only before the first event: once a token reached the caller, switching provider
  would splice two answers together, so a later failure is the caller's to see.

We own this loop (rather than pydantic-ai's ``FallbackModel``) because every attempt, failed or not, must be
recorded with its usage and cost for the run's budget, and the agent runtime calls the chain step by step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic_ai.direct import model_request, model_request_stream
from pydantic_ai.messages import ModelMessage, ModelResponse, ModelResponseStreamEvent
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from virtuousai.llm.policy import PROVIDER_FAILURES, error_class, falls_back, status_code
from virtuousai.llm.prices import PriceSource, Pricing
from virtuousai.timeutil import utcnow

DEFAULT_ATTEMPT_TIMEOUT_S = 60.0
# A streamed answer may take long to finish once it started; this bounds the whole stream (a turn is 9 minutes).
DEFAULT_STREAM_TIMEOUT_S = 540.0
ERROR_TEXT_LIMIT = 500


@dataclass(frozen=True)
class ChainMember:
    """One provider in the chain: a pydantic-ai model and how to describe and price its calls."""

    model: Model
    provider: str
    model_name: str
    pricing: Pricing
    connection_id: str | None = None
    connection_slug: str | None = None
    timeout_s: float | None = None  # this member's own per-attempt timeout; default: the chain's

    @property
    def label(self) -> str:
        return f"{self.connection_slug or self.provider}:{self.model_name}"


@dataclass(frozen=True)
class Attempt:
    """One try at one member. ``error_class`` is ``None`` when it answered."""

    index: int
    provider: str
    model: str
    connection_id: str | None
    started_at: datetime
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # None: the price of this model is unknown (never reported as zero)
    price_source: PriceSource | None
    streamed: bool
    error_class: str | None = None
    error: str | None = None
    status_code: int | None = None
    fell_back: bool = False  # the chain moved on to the next member after this failure

    @property
    def ok(self) -> bool:
        return self.error_class is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for run steps and events."""
        return {
            "index": self.index,
            "provider": self.provider,
            "model": self.model,
            "connection_id": self.connection_id,
            "started_at": self.started_at.isoformat(),
            "latency_ms": round(self.latency_ms, 3),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": None if self.cost is None else str(self.cost),
            "price_source": self.price_source,
            "streamed": self.streamed,
            "error_class": self.error_class,
            "error": self.error,
            "status_code": self.status_code,
            "fell_back": self.fell_back,
        }


def total_cost(attempts: Sequence[Attempt]) -> Decimal | None:
    """The sum of the attempts' costs, or ``None`` if any of them is unknown."""
    total = Decimal(0)
    for attempt in attempts:
        if attempt.cost is None:
            return None
        total += attempt.cost
    return total


class ModelChainError(Exception):
    """The chain produced no (complete) answer. ``error`` is the failure that ended it; ``attempts`` has them all.

    Only provider failures (``policy.PROVIDER_FAILURES``: an API error, or an answer the SDK could not parse) become
    a ``ModelChainError``; anything else (a bug, a diverged script) propagates unchanged and loudly.

    ``exhausted``: every member failed with a provider failure. Otherwise a member failed in a way that must not
    fall back (a request error), or a stream failed after its first token.
    """

    def __init__(self, message: str, *, attempts: Sequence[Attempt], error: BaseException, exhausted: bool) -> None:
        super().__init__(message)
        self.attempts = list(attempts)
        self.error = error
        self.exhausted = exhausted


@dataclass(frozen=True)
class ChainResponse:
    response: ModelResponse
    attempts: list[Attempt]

    @property
    def cost(self) -> Decimal | None:
        return total_cost(self.attempts)


class _AttemptClock:
    """Times one attempt and turns its outcome into an ``Attempt``."""

    def __init__(self, index: int, member: ChainMember, *, streamed: bool) -> None:
        self.index = index
        self.member = member
        self.streamed = streamed
        self.started_at = utcnow()
        self._t0 = time.perf_counter()

    def record(
        self, usage: RequestUsage | None, error: BaseException | None = None, *, fell_back: bool = False
    ) -> Attempt:
        usage = usage or RequestUsage()
        return Attempt(
            index=self.index,
            provider=self.member.provider,
            model=self.member.model_name,
            connection_id=self.member.connection_id,
            started_at=self.started_at,
            latency_ms=(time.perf_counter() - self._t0) * 1000,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=self.member.pricing.cost(usage),
            price_source=self.member.pricing.source,
            streamed=self.streamed,
            error_class=None if error is None else error_class(error),
            error=None if error is None else (str(error) or type(error).__name__)[:ERROR_TEXT_LIMIT],
            status_code=None if error is None else status_code(error),
            fell_back=fell_back,
        )


class ChainStream:
    """The stream of the member that produced a first event. Iterate it for events; ``get()`` for the response.

    An error after the first event is raised as ``ModelChainError`` (``exhausted=False``): no other provider is
    tried once the caller has seen output.
    """

    def __init__(
        self,
        member: ChainMember,
        response: StreamedResponse,
        events: AsyncIterator[ModelResponseStreamEvent],
        first_event: ModelResponseStreamEvent | None,
        clock: _AttemptClock,
        attempts: list[Attempt],
    ) -> None:
        self.member = member
        self._response = response
        self._events = events
        self._first_event = first_event
        self._clock = clock
        self.attempts = attempts
        self._finished = False

    async def __aiter__(self) -> AsyncIterator[ModelResponseStreamEvent]:
        if self._first_event is not None:
            first, self._first_event = self._first_event, None
            yield first
        while True:
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                return
            except PROVIDER_FAILURES as exc:
                self._finish(exc)
                raise ModelChainError(
                    f"{self.member.label} failed after its first token; not falling back",
                    attempts=self.attempts,
                    error=exc,
                    exhausted=False,
                ) from exc
            yield event

    def get(self) -> ModelResponse:
        return self._response.get()

    @property
    def usage(self) -> RequestUsage:
        return self._response.usage

    @property
    def cost(self) -> Decimal | None:
        return total_cost(self.attempts)

    def _finish(self, error: BaseException | None) -> None:
        if not self._finished:
            self._finished = True
            self.attempts.append(self._clock.record(self._response.usage, error))


class ModelChain:
    """Members in order (primary first). Use ``request`` or ``request_stream``; ``aclose`` closes the SDK clients."""

    def __init__(
        self,
        members: Sequence[ChainMember],
        *,
        attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
        stream_timeout_s: float = DEFAULT_STREAM_TIMEOUT_S,
        resources: AsyncExitStack | None = None,
    ) -> None:
        if not members:
            raise ValueError("a model chain needs at least one member")
        self.members = list(members)
        self.attempt_timeout_s = attempt_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self._resources = resources or AsyncExitStack()

    async def __aenter__(self) -> ModelChain:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._resources.aclose()

    def _settings(self, member: ChainMember, base: ModelSettings | None, *, stream: bool) -> ModelSettings:
        timeout = member.timeout_s or self.attempt_timeout_s
        settings: ModelSettings = {**(base or {})}
        if stream:
            settings["first_event_timeout"] = timeout
            settings["request_timeout"] = max(self.stream_timeout_s, timeout)
        else:
            settings["request_timeout"] = timeout
        return settings

    def _stop(
        self, index: int, error: Exception, attempts: list[Attempt], clock: _AttemptClock, usage: RequestUsage | None
    ) -> bool:
        """Record a failed attempt; return True to try the next member, else the caller raises."""
        moves_on = falls_back(error) and index < len(self.members) - 1
        attempts.append(clock.record(usage, error, fell_back=moves_on))
        return moves_on

    def _give_up(self, error: Exception, attempts: list[Attempt]) -> ModelChainError:
        exhausted = falls_back(error)
        what = "every provider failed" if exhausted else "the request was refused; not falling back"
        last = attempts[-1]
        return ModelChainError(
            f"{what} (last: {last.provider}:{last.model}: {last.error_class})",
            attempts=attempts,
            error=error,
            exhausted=exhausted,
        )

    async def request(
        self,
        messages: Sequence[ModelMessage],
        *,
        model_settings: ModelSettings | None = None,
        params: ModelRequestParameters | None = None,
    ) -> ChainResponse:
        attempts: list[Attempt] = []
        for index, member in enumerate(self.members):
            clock = _AttemptClock(index, member, streamed=False)
            try:
                response = await model_request(
                    member.model,
                    list(messages),
                    model_settings=self._settings(member, model_settings, stream=False),
                    model_request_parameters=params,
                    instrument=False,
                )
            except PROVIDER_FAILURES as exc:
                if self._stop(index, exc, attempts, clock, None):
                    continue
                raise self._give_up(exc, attempts) from exc
            attempts.append(clock.record(response.usage))
            return ChainResponse(response=response, attempts=attempts)
        raise AssertionError("unreachable: the last member either answers or raises")

    @asynccontextmanager
    async def request_stream(
        self,
        messages: Sequence[ModelMessage],
        *,
        model_settings: ModelSettings | None = None,
        params: ModelRequestParameters | None = None,
    ) -> AsyncIterator[ChainStream]:
        """Open a stream on the first member whose stream produces an event; fall back only before that event."""
        attempts: list[Attempt] = []
        for index, member in enumerate(self.members):
            clock = _AttemptClock(index, member, streamed=True)
            async with AsyncExitStack() as stack:
                opened: StreamedResponse | None = None
                try:
                    opened = await stack.enter_async_context(
                        model_request_stream(
                            member.model,
                            list(messages),
                            model_settings=self._settings(member, model_settings, stream=True),
                            model_request_parameters=params,
                            instrument=False,
                        )
                    )
                    events = aiter(opened)
                    first = await _first_event(events)
                except PROVIDER_FAILURES as exc:
                    if self._stop(index, exc, attempts, clock, opened.usage if opened else None):
                        continue
                    raise self._give_up(exc, attempts) from exc
                stream = ChainStream(member, opened, events, first, clock, attempts)
                try:
                    yield stream
                except BaseException as exc:
                    stream._finish(exc)
                    raise
                stream._finish(None)
                return


async def _first_event(events: AsyncIterator[ModelResponseStreamEvent]) -> ModelResponseStreamEvent | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
