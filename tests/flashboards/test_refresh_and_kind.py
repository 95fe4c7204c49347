"""The cron refresher driven by its own clock, and the create_flashboard kind through POST /api/v1/action-runs and
as an agent run's child (its ActionContext's parent run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.flashboards.conftest import bar_tile, number_tile, publish_gold
from tests.helpers import eventually
from tests.runtime.conftest import FAST
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.data.engine import shared_lake_engine
from virtuousai.flashboards.kinds import CreateFlashboardInput, create_flashboard
from virtuousai.flashboards.refresh import FlashboardRefresher, RefresherConfig
from virtuousai.flashboards.repository import RefreshLookup
from virtuousai.ids import AGENT_RUN_PREFIX, new_id
from virtuousai.runtime.context import ActionContext, SharedResources
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

API = "/api/v1/flashboards"
RUNS = "/api/v1/action-runs"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", **FAST)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def shared() -> Iterator[SharedResources]:
    """What the kinds share in a context a test builds itself (the runtime's own is closed with the app): the lake
    engine a kind makes in it is closed here, and its query processes stopped, rather than whenever it is collected."""
    shared = SharedResources()
    yield shared
    shared.close()


async def finished(client: httpx.AsyncClient, org: OrgHandle, run_id: str) -> dict[str, Any]:
    async def terminal() -> dict[str, Any] | None:
        run: dict[str, Any] = (await client.get(f"{RUNS}/{run_id}", headers=org.headers)).json()
        return run if run["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return await eventually(terminal, timeout=30, what=f"run {run_id} to end")


async def test_the_refresher_reruns_and_caches_each_tick_once(
    app: FastAPI, client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    body = {"title": "Cron", "tiles": [number_tile()], "refresh_cron": "*/5 * * * *"}
    created = (await client.post(API, headers=gold_org.headers, json=body)).json()
    assert created["refresh_cron"] == "*/5 * * * *"
    refresher = FlashboardRefresher(app.state.sessions, lambda: app.state.lake_engine, RefresherConfig())
    start = utcnow()

    assert (await refresher.run_once(start - timedelta(minutes=1))).refreshed == 0  # no tick since it was saved
    counts = await refresher.run_once(start + timedelta(minutes=10))
    assert (counts.refreshed, counts.lost) == (1, 0)
    cached = (await client.get(f"{API}/{created['id']}/data?cached=true", headers=gold_org.headers)).json()
    assert cached["source"] == "cache" and cached["tiles"][0]["rows"] == [[9]]
    assert (await refresher.run_once(start + timedelta(minutes=10))).refreshed == 0  # that tick is done

    publish_gold(app, gold_org, [{"order_date": "2026-11-03", "category": "books", "orders": 4, "revenue": 1.0}])
    other = FlashboardRefresher(app.state.sessions, lambda: app.state.lake_engine, RefresherConfig())
    later = start + timedelta(minutes=20)
    first, second = await asyncio.gather(refresher.run_once(later), other.run_once(later))
    assert first.refreshed + second.refreshed == 1  # two processes' refreshers, one refresh of the tick
    cached = (await client.get(f"{API}/{created['id']}/data?cached=true", headers=gold_org.headers)).json()
    assert cached["tiles"][0]["rows"] == [[4]]

    # Two processes that read the flashboard before either claimed the next tick: one claim wins.
    async with app.state.sessions() as session:
        (stale,) = await RefreshLookup(session).scheduled()
    tick = later + timedelta(minutes=5)
    claims = []
    for _ in range(2):
        async with app.state.sessions() as session:
            claims.append(await RefreshLookup(session).claim_tick(stale, tick))
    assert claims == [True, False]


async def test_create_flashboard_runs_as_an_action_run_after_approval(
    client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    inputs = {"title": "By agent", "tiles": [bar_tile()]}
    run = (
        await client.post(RUNS, headers=gold_org.headers, json={"kind": "create_flashboard", "inputs": inputs})
    ).json()
    assert run["status"] == "AWAITING_APPROVAL"  # write risk
    approve = {"inputs_hash": run["inputs_hash"]}
    assert (await client.post(f"{RUNS}/{run['id']}/approve", headers=gold_org.headers, json=approve)).status_code == 200
    done = await finished(client, gold_org, run["id"])
    assert done["status"] == "COMPLETED", done
    output = done["output"]
    assert output["version"] == 1 and output["created"] is True
    assert output["url"] == f"{API}/{output['flashboard_id']}"
    assert [c["name"] for c in output["tiles"][0]["columns"]] == ["category", "revenue"]
    saved = (await client.get(output["url"], headers=gold_org.headers)).json()
    assert saved["agent_run_id"] is None and saved["title"] == "By agent"

    update = {**inputs, "tiles": [bar_tile("nope")], "flashboard_id": output["flashboard_id"]}
    run = (
        await client.post(RUNS, headers=gold_org.headers, json={"kind": "create_flashboard", "inputs": update})
    ).json()
    await client.post(f"{RUNS}/{run['id']}/approve", headers=gold_org.headers, json={"inputs_hash": run["inputs_hash"]})
    failed = await finished(client, gold_org, run["id"])
    assert failed["status"] == "FAILED" and failed["attempt"] == 1, failed  # bad input is not retried
    assert failed["error"]["type"] == "validation-error"
    assert failed["error"]["message"].startswith("inputs.tiles.0.chart.encoding.y.field: tile 0")
    assert (await client.get(output["url"], headers=gold_org.headers)).json()["current_version"] == 1


async def test_an_agent_runs_tool_call_records_the_agent_run(
    app: FastAPI, client: httpx.AsyncClient, gold_org: OrgHandle, shared: SharedResources
) -> None:
    agent_run_id = new_id(AGENT_RUN_PREFIX)
    run_id = new_id("run")
    ctx = ActionContext(
        run_id=run_id,
        tenant=TenantContext(tenant_id=gold_org.org_id),
        parent_run_id=agent_run_id,
        data_dir=app.state.settings.data_dir,
        shared=shared,
        _sessions=app.state.sessions,
    )
    inputs = CreateFlashboardInput(title="Agent's", tiles=[bar_tile()])  # type: ignore[list-item]
    output = await create_flashboard.execute(ctx, inputs)
    again = await create_flashboard.execute(ctx, inputs)  # a second attempt of the same run
    assert shared_lake_engine(ctx).process_ids()  # the kind's tiles ran in the engine of ``shared`` (closed by it)
    assert again.flashboard_id == output.flashboard_id
    assert len((await client.get(API, headers=gold_org.headers)).json()["items"]) == 1
    saved = (await client.get(f"{API}/{output.flashboard_id}", headers=gold_org.headers)).json()
    assert saved["agent_run_id"] == agent_run_id
    versions = (await client.get(f"{API}/{output.flashboard_id}/versions", headers=gold_org.headers)).json()
    assert versions["items"][0]["agent_run_id"] == agent_run_id
