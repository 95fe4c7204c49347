"""An app with an in-process worker and the agent test tools, the loopback LLM server, and ``Agents``: helpers to
make LLM connections and specs, start runs, wait for them and read their events.

Settings a test needs changed come from its ``agent_settings`` marker: ``@pytest.mark.agent_settings(
agent_timeout_s=1)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.helpers import eventually
from tests.llm.fake_providers import FakeProviderServer, RunningServer, Script
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.orgs.service import create_organization

TOOLS_MODULE = "tests.agents.kinds_tools"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
RUNS = "/api/v1/agents/runs"
# What the priced connections charge (USD per million tokens) and so what one scripted call costs:
# 12 input tokens at 1000 + 7 output tokens at 2000 = 0.026 USD.
PRICE = {"input_per_mtok": "1000", "output_per_mtok": "2000"}
CALL_COST = "0.026"


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeProviderServer]:
    running = RunningServer()
    server = running.start()
    yield server
    running.stop()


@pytest.fixture
def agent_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("agent_settings")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def settings(db_url: str, tmp_path: Path, agent_settings: dict[str, Any]) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "var",
        kind_modules=(TOOLS_MODULE,),
        poll_interval_s=0.05,
        lease_s=3.0,
        cancel_grace_s=1.0,
        drain_timeout_s=1.0,
        worker_concurrency=8,
        automation_sweep_interval_s=5.0,
        cron_interval_s=3600.0,
        **agent_settings,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A whole server (its worker, orchestrator, sweeps) for the duration of the block: a test that restarts
    everything uses two of these in turn."""
    app = create_app(settings, workers=1)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield app, client


async def new_org(app: FastAPI, name: str = "Acme") -> OrgHandle:
    async with app.state.sessions() as session:
        created = await create_organization(session, name, f"owner-{secrets.token_hex(4)}@example.com")
    return OrgHandle(created.organization.id, created.owner.id, created.key.plaintext)


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test tools record their side effects (``kinds_tools.read_effects``)."""
    path = tmp_path / "effects.jsonl"
    monkeypatch.setenv("AGENT_TOOL_EFFECTS", str(path))
    return path


def spec_markdown(
    slug: str,
    *,
    tools: tuple[str, ...] = ("agent_lookup",),
    mode: str = "primary",
    sub_agents: tuple[str, ...] = (),
    model: str | None = None,
    permissions: dict[str, Any] | None = None,
    on_reject: str | None = None,
    instructions: str = "You answer questions with your tools.",
) -> str:
    lines = ["---", f"name: {slug.title()}", f"slug: {slug}", f"mode: {mode}"]
    if model:
        lines.append(f"model: {model}")
    lines.append("tools:" if tools else "tools: []")
    lines += [f"  - {tool}" for tool in tools]
    if sub_agents:
        lines.append("sub_agents:")
        lines += [f"  - {sub}" for sub in sub_agents]
    if permissions:
        lines.append(f"permissions: {json.dumps(permissions)}")
    if on_reject:
        lines.append(f"on_reject: {on_reject}")
    return "\n".join([*lines, "---", "", instructions, ""])


class Agents:
    """The agent API of one organization, against the loopback LLM server."""

    def __init__(self, client: httpx.AsyncClient, org: OrgHandle, fake: FakeProviderServer) -> None:
        self.client = client
        self.org = org
        self.fake = fake

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=self.org.headers, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def llm(self, script: Script, *, api: str = "openai", priced: bool = True, order: int = 1) -> str:
        """An LLM connection answering with ``script``; returns the tag of its requests in ``fake.log``.
        ``priced``: a provider with a price (every call costs ``CALL_COST``); else a local server with none."""
        scenario = self.fake.script(script)
        tag = f"{api}-{secrets.token_hex(4)}"
        model = "scripted-model"
        if api == "anthropic":
            provider, base_url = "anthropic", self.fake.anthropic_base_url(tag, scenario)
        elif priced:
            provider, base_url = "openai", self.fake.openai_base_url(tag, scenario)
        else:
            provider, base_url = "openai_compatible", self.fake.openai_base_url(tag, scenario)
        config: dict[str, Any] = {"base_url": base_url, "models": [model], "order": order}
        if priced:
            config["prices"] = {"*": PRICE}  # whatever model the alias picks
        body = {"provider": provider, "name": tag, "slug": tag, "config": config, "secrets": {"api_key": "sk-test"}}
        await self.call("POST", "/api/v1/connections", 201, json=body)
        return tag

    async def spec(self, slug: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "POST", "/api/v1/agents/specs", 201, json={"markdown": spec_markdown(slug, **options)}
        )
        return result

    async def start(
        self, agent: str, input: str = "What is the answer?", *, wait: float | None = None, **body: Any
    ) -> dict[str, Any]:
        query = f"?wait={wait}" if wait else ""
        result: dict[str, Any] = await self.call(
            "POST", RUNS + query, 201, json={"agent": agent, "input": input, **body}
        )
        return result

    async def get(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"{RUNS}/{run_id}")
        return result

    async def wait(self, run_id: str, until: Any = None, timeout_s: float = 30.0) -> dict[str, Any]:
        """The run once ``until(run)`` (default: terminal), waiting on the API's ``?wait=`` with a deadline."""
        condition = until or (lambda run: run["status"] in TERMINAL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            run = await self.get(run_id)
            if condition(run):
                return run
            if loop.time() > deadline:
                raise AssertionError(f"agent run {run_id} did not get there in {timeout_s}s: {run}")
            if run["status"] not in TERMINAL and run["status"] != "AWAITING_APPROVAL":
                await self.call("GET", f"{RUNS}/{run_id}?wait=1")
            else:
                await asyncio.sleep(0.02)  # terminal or parked: only another actor moves it; look again soon

    async def wait_action(self, action_run_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """An ActionRun once terminal (the API's own ``?wait=``)."""
        path = f"/api/v1/action-runs/{action_run_id}"
        result: dict[str, Any] = await eventually(
            lambda: self._terminal(path), timeout=timeout_s, what=f"action run {action_run_id} to end"
        )
        return result

    async def _terminal(self, path: str) -> dict[str, Any] | None:
        run: dict[str, Any] = await self.call("GET", f"{path}?wait=1")
        return run if run["status"] in TERMINAL else None

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call("GET", f"{RUNS}/{run_id}/steps")
        return result

    async def events(self, run_id: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
        """The run's whole event stream (it ends after the terminal event): ``{id, event, data}`` each."""
        headers = {**self.org.headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        response = await self.client.get(f"{RUNS}/{run_id}/events", headers=headers)
        assert response.status_code == 200, response.text
        events = []
        for block in response.text.replace("\r\n", "\n").split("\n\n"):
            fields = dict(
                line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
            )
            if "id" in fields:
                events.append(
                    {"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])["data"]}
                )
        return events


@pytest.fixture
def agents(client: httpx.AsyncClient, org: OrgHandle, fake_llm: FakeProviderServer) -> Agents:
    return Agents(client, org, fake_llm)
