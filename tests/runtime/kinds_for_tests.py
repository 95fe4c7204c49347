"""Action kinds that exist only for tests. Listed in the ``kind_modules`` setting, so in-process workers and
worker subprocesses alike register them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind


class StuckInput(BaseModel):
    seconds: float = Field(default=3.0, ge=0, le=30)


class StuckOutput(BaseModel):
    slept_s: float


@action_kind(
    "test_stuck",
    risk="read",
    description="Test only: a sync kind that ignores cancellation (it never looks at ctx.cancel).",
    timeout_s=60,
    retry=RetryPolicy(max_attempts=1),
)
def stuck(ctx: ActionContext, inputs: StuckInput) -> StuckOutput:
    time.sleep(inputs.seconds)
    return StuckOutput(slept_s=inputs.seconds)


class ProgressInput(BaseModel):
    steps: int = Field(default=3, ge=0, le=100)


class ProgressOutput(BaseModel):
    steps: int


@action_kind("test_progress", risk="read", description="Test only: emits one progress event per step.")
async def progress(ctx: ActionContext, inputs: ProgressInput) -> ProgressOutput:
    for step in range(1, inputs.steps + 1):
        await ctx.emit("progress", {"step": step, "of": inputs.steps})
    return ProgressOutput(steps=inputs.steps)


class WriteInput(BaseModel):
    value: str = Field(max_length=200)


class WriteOutput(BaseModel):
    written: str
    idempotency_key: str


@action_kind("test_write", risk="write", description="Test only: a write-risk kind (approval gates).", timeout_s=30)
async def write(ctx: ActionContext, inputs: WriteInput) -> WriteOutput:
    return WriteOutput(written=inputs.value, idempotency_key=ctx.idempotency_key)


@dataclass
class Gate:
    """``entered``: a run is waiting at the gate (its worker is executing it); ``opened``: it may go on."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.opened.set()

    async def reached(self, timeout: float = 15.0) -> None:
        """Wait until a run waits at the gate."""
        await asyncio.wait_for(self.entered.wait(), timeout=timeout)


# In-process workers only (a worker subprocess has no test to open its gates).
GATES: dict[str, Gate] = {}


class GateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str


class GateOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str


@action_kind("test_gate", risk="read", description="Test only: waits until the test opens GATES[gate].", timeout_s=30)
async def wait_at_gate(ctx: ActionContext, inputs: GateInput) -> GateOutput:
    gate = GATES[inputs.gate]
    gate.entered.set()
    await asyncio.wait_for(gate.opened.wait(), timeout=20)
    return GateOutput(gate=inputs.gate)


@action_kind(
    "test_slow_to_stop",
    risk="read",
    description="Test only: once its token trips, waits at GATES[gate] before it stops (its cleanup takes a while).",
    timeout_s=30,
    retry=RetryPolicy(max_attempts=3, backoff_s=30),
)
async def slow_to_stop(ctx: ActionContext, inputs: GateInput) -> GateOutput:
    gate = GATES[inputs.gate]
    try:
        await ctx.cancel.sleep(30)
    finally:
        gate.entered.set()
        await asyncio.wait_for(gate.opened.wait(), timeout=20)
    return GateOutput(gate=inputs.gate)
