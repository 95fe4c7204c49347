"""Action kinds: a slug, typed input and output models, a risk level, defaults, and ``execute(ctx, inputs)``.

Declare a kind with the decorator; the input and output models come from the function's annotations::

    class EchoInput(BaseModel): ...

    @action_kind("echo", risk="read", description="Returns its inputs.")
    async def echo(ctx: ActionContext, inputs: EchoInput) -> EchoOutput: ...

A plain ``def`` is run in a worker thread; it should poll ``ctx.cancel.cancelled`` at safe points.
Modules that declare kinds are listed in ``KIND_MODULES`` and imported once by ``default_registry()``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel

from virtuousai.actions.context import ActionContext

Risk = Literal["read", "write"]

# Every module that declares kinds. Importing it registers them on the module-level catalog below.
KIND_MODULES: tuple[str, ...] = ("virtuousai.actions.kinds", "virtuousai.data.kinds")


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
        return sorted(self._kinds.values(), key=lambda k: k.slug)


# Kinds declared with @action_kind land here; default_registry() returns it once every module is imported.
_DECLARED = KindRegistry()


def action_kind(
    slug: str,
    *,
    risk: Risk,
    description: str,
    timeout_s: float = 300.0,
    retry: RetryPolicy | None = None,
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
        )
        return _DECLARED.register(kind)

    return decorate


@cache
def default_registry() -> KindRegistry:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return _DECLARED


def load_registry(extra_modules: Iterable[str] = ()) -> KindRegistry:
    """The default registry plus the kinds declared in ``extra_modules`` (the ``kind_modules`` setting: plugins,
    and tests that register kinds inside worker subprocesses)."""
    registry = default_registry()
    for module in extra_modules:
        importlib.import_module(module)
    return registry
