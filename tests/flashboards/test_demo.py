"""The demo flashboard: saved (its six tiles checked) once the demo's gold table exists, once."""

from __future__ import annotations

from datetime import date

import httpx
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.data.conftest import publish_rows
from virtuousai.data.lake import TenantLake
from virtuousai.flashboards.demo import seed_demo_flashboard
from virtuousai.store.tenant import TenantContext

ROWS: list[dict[str, object]] = [
    {"order_date": date(2026, 11, d), "category": c, "orders": d, "units": 2 * d, "revenue": 10.0 * d}
    for d in (1, 2, 3)
    for c in ("books", "games")
]


async def test_the_demo_flashboard_waits_for_the_gold_table_then_is_made_once(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    tenant = TenantContext(tenant_id=org.org_id)
    async with app.state.sessions() as session:
        assert await seed_demo_flashboard(session, tenant, app.state.settings) is None
    publish_rows(TenantLake(app.state.settings.lake_dir, org.org_id), "gold.shop.daily_revenue", ROWS)
    async with app.state.sessions() as session:
        made = await seed_demo_flashboard(session, tenant, app.state.settings)
    async with app.state.sessions() as session:
        assert await seed_demo_flashboard(session, tenant, app.state.settings) == made
    items = (await client.get("/api/v1/flashboards", headers=org.headers)).json()["items"]
    assert [i["id"] for i in items] == [made] and len(items[0]["tiles"]) == 6
    data = (await client.get(f"/api/v1/flashboards/{made}/data", headers=org.headers)).json()
    assert [t["error"] for t in data["tiles"]] == [None] * 6
    assert data["tiles"][4]["rows"] == [[120.0]]
    for index in range(4):
        svg = await client.get(f"/api/v1/flashboards/{made}/tiles/{index}/chart.svg", headers=org.headers)
        assert svg.status_code == 200 and svg.text.lstrip().startswith("<svg")
