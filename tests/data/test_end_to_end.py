"""Through the real API and an in-process worker: a connection, ``dlt_extract`` and ``sql_transform`` runs created
with ``POST /api/v1/action-runs``, then ``POST /api/v1/query`` over what they published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.runtime.conftest import FAST
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.data.demo_data import generate_shop_database

RUNS = "/api/v1/action-runs"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", **FAST)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


async def _run(client: httpx.AsyncClient, org: OrgHandle, kind: str, inputs: dict[str, object]) -> dict[str, object]:
    response = await client.post(f"{RUNS}?wait=60", headers=org.headers, json={"kind": kind, "inputs": inputs})
    assert response.status_code == 201, response.text
    run: dict[str, object] = response.json()
    assert run["status"] == "COMPLETED", run
    return run


async def test_extract_and_transform_runs_feed_the_query_api(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle, tmp_path: Path
) -> None:
    shop = generate_shop_database(tmp_path / "shop.db", seed=5, customers=50, products=20, orders=300)
    created = await client.post(
        "/api/v1/connections",
        headers=org.headers,
        json={"provider": "sqlite", "name": "Shop", "slug": "shop", "config": {"path": str(shop.path)}},
    )
    assert created.status_code == 201, created.text

    extract = await _run(
        client,
        org,
        "dlt_extract",
        {
            "connection": "slug:shop",
            "dataset": "shop",
            "source": {"type": "sql_database", "tables": ["orders", "order_items"], "incremental": {"orders": "id"}},
        },
    )
    assert extract["output"]["rows"] == {"orders": 300, "order_items": shop.order_items}  # type: ignore[index]

    await _run(
        client,
        org,
        "sql_transform",
        {
            "sql": "SELECT status, count(*) AS orders FROM bronze.shop.orders GROUP BY status",
            "target": {"layer": "gold", "dataset": "shop", "table": "orders_by_status"},
        },
    )
    query = await client.post(
        "/api/v1/query", headers=org.headers, json={"sql": "SELECT sum(orders) FROM gold.shop.orders_by_status"}
    )
    assert query.json()["rows"] == [[300]]

    # The other organization sees none of it, through the catalog, the query API or an action.
    theirs = await client.get("/api/v1/datasets", headers=other_org.headers)
    assert all(layer["tables"] == [] for layer in theirs.json()["layers"])
    refused = await client.post(
        f"{RUNS}?wait=30",
        headers=other_org.headers,
        json={
            "kind": "sql_transform",
            "inputs": {
                "sql": "SELECT * FROM bronze.shop.orders",
                "target": {"layer": "gold", "dataset": "x", "table": "y"},
            },
        },
    )
    assert refused.json()["status"] == "FAILED"
    assert "bronze.shop.orders" in str(refused.json()["error"])
