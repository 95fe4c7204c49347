"""``vai agent run <slug> "question" --org …`` (a real process) against the database this test's app and worker
use: it streams the narration and the steps, asks y/n for each write tool's call, and exits non-zero unless the
run COMPLETED."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.agents.conftest import TOOLS_MODULE, Agents
from tests.agents.kinds_tools import read_effects
from tests.llm.fake_providers import Turn
from tests.servers import VAI, vai_env
from virtuousai.config import Settings


async def vai_agent_run(settings: Settings, effects: Path, *args: str, answers: str = "") -> tuple[int, str, str]:
    env = vai_env(
        settings.data_dir,
        VAI_DATABASE_URL=settings.resolved_database_url,
        VAI_KIND_MODULES=TOOLS_MODULE,
        AGENT_TOOL_EFFECTS=str(effects),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    process = await asyncio.create_subprocess_exec(
        VAI,
        "agent",
        "run",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(answers.encode()), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_streams_the_run_and_asks_for_approvals(
    agents: Agents, settings: Settings, effects: Path
) -> None:
    send = ("agent_send", {"to": "ops@example.com", "text": "Hello."})
    await agents.llm(
        [
            Turn(text="Looking it up.", tool_calls=[("agent_lookup", {"q": "status"})]),
            Turn(tool_calls=[send]),
            Turn(text="All systems normal; ops told."),
        ]
    )
    await agents.spec("ops-bot", tools=("agent_lookup", "agent_send"))
    code, out, err = await vai_agent_run(
        settings, effects, "ops-bot", "How are things?", "--org", agents.org.org_id, answers="y\n"
    )
    assert code == 0, (out, err)
    assert "Looking it up." in out and "All systems normal; ops told." in out
    assert "→ tool agent_lookup" in err and "✓ tool agent_send" in err
    assert "Allow agent_send" in err
    assert [e["tool"] for e in read_effects(effects)] == ["agent_lookup", "agent_send"]


async def test_the_cli_exits_non_zero_when_the_run_does_not_complete(
    agents: Agents, settings: Settings, effects: Path
) -> None:
    send = ("agent_send", {"to": "ops@example.com", "text": "Hello."})
    await agents.llm([Turn(tool_calls=[send]), Turn(text="never")])
    await agents.spec("pushy", tools=("agent_send",))
    code, out, err = await vai_agent_run(
        settings, effects, "pushy", "Send it.", "--org", agents.org.org_id, answers="n\n"
    )
    assert code == 1, (out, err)
    assert "CANCELLED rejected" in err
    assert read_effects(effects) == []

    await agents.spec("mute", tools=())
    for connection in (await agents.call("GET", "/api/v1/connections"))["items"]:
        await agents.call("DELETE", f"/api/v1/connections/{connection['id']}", 204)
    code, out, err = await vai_agent_run(settings, effects, "mute", "Anything?", "--org", agents.org.org_id)
    assert code == 1 and "FAILED no_model" in err, (out, err)
    code, out, err = await vai_agent_run(settings, effects, "nobody", "Anything?", "--org", agents.org.org_id)
    assert code == 2 and "not found" in err, (out, err)
