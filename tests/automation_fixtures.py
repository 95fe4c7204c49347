"""Fixtures and helpers of the tests that run automations (``tests/automations``, ``tests/orchestration``, whose
conftests import the fixtures): an app with one in-process worker and tiny intervals, ``automations`` to create,
start, read and wait for runs through the API, and ``gate``, a step held until the test opens it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.helpers import eventually, parse_sse
from tests.runtime.kinds_for_tests import GATES, Gate
from virtuousai.app import create_app
from virtuousai.config import Settings

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
TEST_KINDS = "tests.runtime.kinds_for_tests"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "var",
        poll_interval_s=0.05,
        lease_s=3.0,
        cancel_grace_s=1.0,
        drain_timeout_s=1.0,
        worker_concurrency=8,
        automation_sweep_interval_s=5.0,
        cron_interval_s=3600.0,  # cron is driven by run_once in its own tests
        # test_write (waits in AWAITING_APPROVAL until the test approves it), test_gate (the ``gate`` fixture)
        kind_modules=(TEST_KINDS,),
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


class Automations:
    def __init__(self, client: httpx.AsyncClient, org: OrgHandle) -> None:
        self.client = client
        self.org = org

    async def create(self, steps: list[dict[str, Any]], slug: str = "flow", **extra: Any) -> dict[str, Any]:
        spec = {"name": slug, "slug": slug, "steps": steps, **extra}
        response = await self.client.post("/api/v1/automations", json=spec, headers=self.org.headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def start(self, slug: str = "flow", params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/automations/slug:{slug}/runs", json={"params": params or {}}, headers=self.org.headers
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/automation-runs/{run_id}", headers=self.org.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait(self, run_id: str, timeout_s: float = 20.0, until: Any = None) -> dict[str, Any]:
        """Poll the run until ``until(run)`` (default: terminal), with a deadline."""
        condition = until or (lambda run: run["status"] in TERMINAL)

        async def reached() -> dict[str, Any] | None:
            run = await self.get(run_id)
            return run if condition(run) else None

        result: dict[str, Any] = await eventually(
            reached, timeout=timeout_s, interval=0.05, what=f"automation run {run_id} to get there"
        )
        return result

    async def action_run(self, action_run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/action-runs/{action_run_id}", headers=self.org.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events (``seq``, ``kind``, ``data``), read through its SSE stream, which ends with the run."""
        return await self._stream(f"/api/v1/automation-runs/{run_id}/events")

    async def action_run_events(self, action_run_id: str) -> list[dict[str, Any]]:
        return await self._stream(f"/api/v1/action-runs/{action_run_id}/events")

    async def _stream(self, path: str) -> list[dict[str, Any]]:
        response = await self.client.get(path, headers=self.org.headers)
        assert response.status_code == 200, response.text
        return [json.loads(event["data"]) for event in parse_sse(response.text)]

    async def wait_action_run(self, action_run_id: str, status: str, timeout_s: float = 15.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            action_run = await self.action_run(action_run_id)
            return action_run if action_run["status"] == status else None

        result: dict[str, Any] = await eventually(
            reached, timeout=timeout_s, interval=0.05, what=f"action run {action_run_id} to be {status}"
        )
        return result


@pytest.fixture
def automations(client: httpx.AsyncClient, org: OrgHandle) -> Automations:
    return Automations(client, org)


def steps_by_key(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["key"]: step for step in run["steps"]}


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A ``test_gate`` step with ``{"gate": "g"}`` holds its ActionRun RUNNING until ``gate.open()``."""
    GATES["g"] = Gate()
    yield GATES["g"]
    GATES.pop("g").open()
