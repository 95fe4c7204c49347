"""Action kinds: a slug, typed input and output models, a risk level, defaults, and ``execute(ctx, inputs)``.

Declare a kind with the decorator; the input and output models come from the function's annotations::

    class EchoInput(BaseModel): ...

    @action_kind("echo", risk="read", description="Returns its inputs.")
    async def echo(ctx: ActionContext, inputs: EchoInput) -> EchoOutput: ...

A plain ``def`` is run in a worker thread; it should poll ``ctx.cancel.cancelled`` at safe points.
Kinds declared with the decorator land in ``DECLARED``; the catalog of the modules that declare them, and the
registry a process runs with, are the actions primitive's (``virtuousai/actions/registry.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel

from virtuousai.runtime.context import ActionContext

Risk = Literal["read", "write"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed run is tried again and how long to wait in between (exponential, with jitter)."""

    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    jitter: float = 0.2  # ± fraction of the delay


@dataclass(frozen=True)
class ActionKind:
    slug: str
    description: str
    risk: Risk
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    execute: Callable[[ActionContext, Any], Awaitable[Any] | Any]
    default_timeout_s: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Made by the system for its own runs (an agent's model call), never through ``POST /action-runs``, nor listed.
    internal: bool = False

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.execute)

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.output_model.model_json_schema()


class UnknownKind(KeyError):
    pass


class KindRegistry:
    def __init__(self, kinds: Iterable[ActionKind] = ()) -> None:
        self._kinds: dict[str, ActionKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: ActionKind) -> ActionKind:
        if kind.slug in self._kinds and self._kinds[kind.slug] is not kind:
            raise ValueError(f"action kind {kind.slug!r} is declared twice")
        self._kinds[kind.slug] = kind
        return kind

    def get(self, slug: str) -> ActionKind:
        try:
            return self._kinds[slug]
        except KeyError:
            raise UnknownKind(slug) from None

    def __contains__(self, slug: object) -> bool:
        return slug in self._kinds

    def all(self) -> list[ActionKind]:
        """Every kind anyone may run (not the system's own: ``internal``)."""
        return sorted((k for k in self._kinds.values() if not k.internal), key=lambda k: k.slug)


# Kinds declared with @action_kind land here (``actions.registry.default_registry`` imports every module that
# declares some, then returns it).
DECLARED = KindRegistry()


def action_kind(
    slug: str,
    *,
    risk: Risk,
    description: str,
    timeout_s: float = 300.0,
    retry: RetryPolicy | None = None,
    internal: bool = False,
) -> Callable[[Callable[..., Any]], ActionKind]:
    def decorate(fn: Callable[..., Any]) -> ActionKind:
        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        if len(params) != 2:
            raise TypeError(f"{fn.__name__}: an action kind takes (ctx, inputs)")
        input_model, output_model = hints[params[1]], hints["return"]
        for model in (input_model, output_model):
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                raise TypeError(f"{fn.__name__}: inputs and return must be Pydantic models, got {model!r}")
        kind = ActionKind(
            slug=slug,
            description=description,
            risk=risk,
            input_model=input_model,
            output_model=output_model,
            execute=fn,
            default_timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            internal=internal,
        )
        return DECLARED.register(kind)

    return decorate
