"""``/api/v1/datasets`` and ``/api/v1/query`` over HTTP: shapes, errors, and one organization per lake."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.data.conftest import publish_rows
from virtuousai.data.lake import TenantLake


def _lake(app: FastAPI, org: OrgHandle) -> TenantLake:
    return TenantLake(app.state.settings.lake_dir, org.org_id)


async def test_catalog_query_and_preview(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    lake = _lake(app, org)
    publish_rows(lake, "bronze.shop.orders", [{"id": i, "amount": float(i), "status": "paid"} for i in range(30)])
    publish_rows(lake, "gold.shop.daily_revenue", [{"day": "2024-01-01", "revenue": 12.5}])

    catalog = (await client.get("/api/v1/datasets", headers=org.headers)).json()
    assert [layer["name"] for layer in catalog["layers"]] == ["bronze", "silver", "gold"]
    (orders,) = catalog["layers"][0]["tables"]
    assert orders["name"] == "bronze.shop.orders" and orders["row_count"] == 30 and orders["version"] == 1
    assert orders["columns"] == [
        {"name": "id", "type": "BIGINT"},
        {"name": "amount", "type": "DOUBLE"},
        {"name": "status", "type": "VARCHAR"},
    ]
    assert orders["last_load_at"] and orders["freshness_s"] >= 0 and orders["last_run_id"] == "run_test"
    assert catalog["layers"][1]["tables"] == []

    response = await client.post(
        "/api/v1/query",
        json={"sql": "SELECT status, sum(amount) AS total FROM bronze.shop.orders GROUP BY status", "limit": 10},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == [{"name": "status", "type": "VARCHAR"}, {"name": "total", "type": "DOUBLE"}]
    assert body["rows"] == [["paid", 435.0]] and body["truncated"] is False and body["elapsed_ms"] >= 0

    preview = await client.get("/api/v1/datasets/bronze/shop.orders/preview?limit=5", headers=org.headers)
    assert preview.status_code == 200
    assert len(preview.json()["rows"]) == 5 and preview.json()["truncated"] is True


async def test_refusals_are_422_problems_naming_what_was_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    refused = await client.post("/api/v1/query", json={"sql": "DROP VIEW bronze.shop.orders"}, headers=org.headers)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:virtuousai:problem:sql-rejected"
    assert "DROP" in refused.json()["detail"] and refused.json()["errors"][0]["loc"] == ["body", "sql"]

    reader = await client.post(
        "/api/v1/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}, headers=org.headers
    )
    assert reader.status_code == 422 and "read_csv" in reader.json()["detail"]

    unknown = await client.post("/api/v1/query", json={"sql": "SELECT * FROM silver.shop.nope"}, headers=org.headers)
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "urn:virtuousai:problem:unknown-table"
    assert "silver.shop.nope" in unknown.json()["detail"]

    assert (await client.post("/api/v1/query", json={"sql": "SELECT 1"})).status_code == 401


async def test_one_organization_cannot_reach_anothers_lake(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    theirs = _lake(app, other_org)
    publish_rows(theirs, "bronze.secret.payroll", [{"name": "ceo", "salary": 1e6}])
    their_file = theirs.absolute_files(theirs.manifests()[0])[0]
    publish_rows(_lake(app, org), "bronze.shop.orders", [{"id": 1}])

    catalog = (await client.get("/api/v1/datasets", headers=org.headers)).json()
    names = [t["name"] for layer in catalog["layers"] for t in layer["tables"]]
    assert names == ["bronze.shop.orders"]

    for sql in (
        "SELECT * FROM bronze.secret.payroll",
        f"SELECT * FROM read_parquet('{their_file}')",
        f"SELECT * FROM '{their_file}'",
        f"SELECT * FROM glob('{their_file.parent}/*')",
    ):
        response = await client.post("/api/v1/query", json={"sql": sql}, headers=org.headers)
        assert response.status_code == 422, sql
        assert "ceo" not in response.text

    preview = await client.get("/api/v1/datasets/bronze/secret.payroll/preview", headers=org.headers)
    assert preview.status_code == 404
    traversal = await client.get(f"/api/v1/datasets/bronze/..%2F..%2F{other_org.org_id}.x/preview", headers=org.headers)
    assert traversal.status_code == 404

    # The owner still sees it.
    own = await client.post(
        "/api/v1/query", json={"sql": "SELECT name FROM bronze.secret.payroll"}, headers=other_org.headers
    )
    assert own.json()["rows"] == [["ceo"]]
