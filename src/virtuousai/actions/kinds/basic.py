"""``echo``, ``sleep`` and ``fail``: the kinds for demos, retries and tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind


class EchoInput(BaseModel):
    model_config = ConfigDict(extra="allow")


class EchoOutput(BaseModel):
    model_config = ConfigDict(extra="allow")


@action_kind("echo", risk="read", description="Returns its inputs unchanged.", timeout_s=60)
async def echo(ctx: ActionContext, inputs: EchoInput) -> EchoOutput:
    return EchoOutput.model_validate(inputs.model_dump())


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=86_400, description="How long to sleep; cancellation wakes it early.")


class SleepOutput(BaseModel):
    slept_s: float


@action_kind("sleep", risk="read", description="Sleeps, honouring cancellation.", timeout_s=86_400)
async def sleep(ctx: ActionContext, inputs: SleepInput) -> SleepOutput:
    await ctx.cancel.sleep(inputs.seconds)
    return SleepOutput(slept_s=inputs.seconds)


class FailInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error_type: str = Field(default="DemoError", max_length=100)
    message: str = Field(default="failed on purpose", max_length=2000)
    succeed_on_attempt: int | None = Field(
        default=None, ge=1, description="Succeed from this attempt on (for retry demos)."
    )


class FailOutput(BaseModel):
    attempt: int
    data: dict[str, Any] = Field(default_factory=dict)


class ActionFailed(Exception):
    """An error raised on purpose by ``fail``; ``error_type`` is what the run records as the error's type."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@action_kind(
    "fail",
    risk="read",
    description="Raises the error it is given (until `succeed_on_attempt`).",
    timeout_s=60,
    retry=RetryPolicy(max_attempts=1),
)
async def fail(ctx: ActionContext, inputs: FailInput) -> FailOutput:
    if inputs.succeed_on_attempt is not None and ctx.attempt >= inputs.succeed_on_attempt:
        return FailOutput(attempt=ctx.attempt)
    raise ActionFailed(inputs.error_type, inputs.message)
