"""The no-op read tool of ``bench/agents.py``, as an action kind registered as an agent tool (``kind_modules``:
``bench._agents_tools``, so the bench's in-process worker and its ``vai worker`` processes alike have it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.agents.tools import ToolCategory, ToolInfo, ToolRisk, register_tool
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import action_kind

TOOL = "bench_noop"


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, description="What to look up.")


class NoopOutput(BaseModel):
    answer: str


@action_kind(TOOL, risk="read", description="Bench only: a read tool that does nothing.", timeout_s=60)
async def bench_noop(ctx: ActionContext, inputs: NoopInput) -> NoopOutput:
    return NoopOutput(answer=f"the answer to {inputs.q}")


register_tool(ToolInfo(TOOL, ToolCategory.integration, ToolRisk.read, "Bench only: a no-op read tool"))
