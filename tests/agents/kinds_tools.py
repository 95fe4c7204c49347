"""Tools for the agent tests: action kinds registered as agent tools (``register_tool``), listed in the
``kind_modules`` setting so in-process workers and worker subprocesses alike have them.

Every call records its side effect as one JSON line in the file named by ``AGENT_TOOL_EFFECTS`` (a file, so worker
subprocesses and the test see the same record), keyed by the ActionRun's id — a tool run twice would show twice.
A call may wait for a file to exist first (``wait_for``: the crash test kills the worker while it waits), and says
it started in ``<effects>.started``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.agents.tools import ToolCategory, ToolInfo, ToolRisk, register_tool
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind

EFFECTS_ENV = "AGENT_TOOL_EFFECTS"


def effects_file() -> Path | None:
    path = os.environ.get(EFFECTS_ENV)
    return Path(path) if path else None


def read_effects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    with path.open("a") as out:  # one write of one line: whole lines, also from several processes
        out.write(json.dumps(record) + "\n")
        out.flush()
        os.fsync(out.fileno())


async def _wait_for(ctx: ActionContext, wait_for: str | None) -> None:
    if wait_for is None:
        return
    while not Path(wait_for).exists():  # the test's signal: it creates the file
        ctx.cancel.raise_if_cancelled()
        await asyncio.sleep(0.02)


class LookupInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, description="What to look up.")
    connection: str | None = Field(default=None, description="The connection to look it up in.")
    wait_for: str | None = Field(default=None, description="Test only: a file to wait for first.")


class LookupOutput(BaseModel):
    answer: str


@action_kind(
    "agent_lookup",
    risk="read",
    description="Test only: look something up (a read tool).",
    timeout_s=60,
    retry=RetryPolicy(max_attempts=3, backoff_s=0.1),
)
async def agent_lookup(ctx: ActionContext, inputs: LookupInput) -> LookupOutput:
    path = effects_file()
    _append(path.with_suffix(".started") if path else None, {"run_id": ctx.run_id, "attempt": ctx.attempt})
    await _wait_for(ctx, inputs.wait_for)
    _append(path, {"run_id": ctx.run_id, "tool": "agent_lookup", "q": inputs.q})
    return LookupOutput(answer=f"the answer to {inputs.q}")


class SendInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1)
    text: str = Field(min_length=1)


class SendOutput(BaseModel):
    sent: bool


@action_kind("agent_send", risk="write", description="Test only: send a message (a write tool).", timeout_s=60)
async def agent_send(ctx: ActionContext, inputs: SendInput) -> SendOutput:
    _append(effects_file(), {"run_id": ctx.run_id, "tool": "agent_send", "to": inputs.to, "text": inputs.text})
    return SendOutput(sent=True)


class SlowInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=60)


class SlowOutput(BaseModel):
    waited_s: float


@action_kind("agent_slow", risk="read", description="Test only: takes its time (cooperatively).", timeout_s=60)
async def agent_slow(ctx: ActionContext, inputs: SlowInput) -> SlowOutput:
    await ctx.cancel.sleep(inputs.seconds)
    return SlowOutput(waited_s=inputs.seconds)


for slug, risk in (("agent_lookup", ToolRisk.read), ("agent_send", ToolRisk.write), ("agent_slow", ToolRisk.read)):
    register_tool(ToolInfo(slug, ToolCategory.integration, risk, f"Test only: {slug}"))
