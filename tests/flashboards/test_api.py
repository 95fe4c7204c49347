"""The flashboards API on SQLite and PostgreSQL, over a real lake table: save-time checks, versions, data, charts."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.actions.conftest import key_with_role
from tests.conftest import OrgHandle
from tests.flashboards.conftest import GOLD, bar_tile, number_tile, publish_gold, table_tile
from tests.foundation.helpers import assert_problem

API = "/api/v1/flashboards"


def board(*tiles: dict[str, Any]) -> dict[str, Any]:
    return {"title": "Shop", "description": "Daily revenue", "tiles": list(tiles)}


async def count_flashboards(client: httpx.AsyncClient, org: OrgHandle) -> int:
    return len((await client.get(API, headers=org.headers)).json()["items"])


async def test_a_flashboard_is_created_with_each_tiles_columns(client: httpx.AsyncClient, gold_org: OrgHandle) -> None:
    response = await client.post(API, headers=gold_org.headers, json=board(bar_tile(), number_tile(), table_tile()))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["current_version"] == 1 and created["agent_run_id"] is None
    assert [c["name"] for c in created["tiles"][0]["columns"]] == ["category", "revenue"]
    assert [t["type"] for t in created["tiles"]] == ["chart", "number", "table"]
    fetched = (await client.get(f"{API}/{created['id']}", headers=gold_org.headers)).json()
    assert fetched == created
    assert [f["id"] for f in (await client.get(API, headers=gold_org.headers)).json()["items"]] == [created["id"]]


async def test_a_chart_field_that_is_no_column_is_a_422_naming_tile_and_field(
    client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    response = await client.post(
        API, headers=gold_org.headers, json=board(number_tile(), table_tile(), bar_tile("profit"))
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "tiles", 2, "chart", "encoding", "y", "field"]
    assert "tile 2 ('Revenue by category')" in error["msg"] and "'profit'" in error["msg"]
    assert await count_flashboards(client, gold_org) == 0


async def test_tile_sql_is_guarded_at_save(client: httpx.AsyncClient, gold_org: OrgHandle) -> None:
    passwd = {"title": "x", "sql": "SELECT * FROM read_csv('/etc/passwd')", "type": "table"}
    response = await client.post(API, headers=gold_org.headers, json=board(bar_tile(), passwd))
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("sql-rejected") and "read_csv" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "tiles", 1, "sql"]
    missing = {"title": "x", "sql": "SELECT * FROM gold.shop.nothing", "type": "table"}
    response = await client.post(API, headers=gold_org.headers, json=board(missing))
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "tiles", 0, "sql"]
    no_spec = {**bar_tile(), "chart": None}
    url_spec = bar_tile()
    url_spec["chart"]["data"] = {"url": "https://example.com/x.csv"}
    response = await client.post(API, headers=gold_org.headers, json=board(no_spec, url_spec))
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
        ("body", "tiles", 0, "chart"),
        ("body", "tiles", 1, "chart", "data"),
        ("body", "tiles", 1, "chart", "data", "url"),
    }
    response = await client.post(API, headers=gold_org.headers, json={**board(bar_tile()), "refresh_cron": "soon"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "refresh_cron"]
    assert await count_flashboards(client, gold_org) == 0


async def test_each_update_is_a_new_version_and_the_same_content_is_none(
    client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    created = (await client.post(API, headers=gold_org.headers, json=board(bar_tile()))).json()
    url = f"{API}/{created['id']}"
    second = (await client.put(url, headers=gold_org.headers, json=board(bar_tile(), number_tile()))).json()
    assert second["current_version"] == 2 and len(second["tiles"]) == 2
    again = (await client.put(url, headers=gold_org.headers, json=board(bar_tile(), number_tile()))).json()
    assert again["current_version"] == 2 and again["content_hash"] == second["content_hash"]
    bad = await client.put(url, headers=gold_org.headers, json=board(bar_tile("nope")))
    assert bad.status_code == 422
    versions = (await client.get(f"{url}/versions", headers=gold_org.headers)).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert [len(v["tiles"]) for v in versions] == [2, 1]
    assert (await client.get(url, headers=gold_org.headers)).json()["current_version"] == 2
    assert (await client.delete(url, headers=gold_org.headers)).status_code == 204
    assert (await client.get(url, headers=gold_org.headers)).status_code == 404


async def test_a_viewer_reads_flashboards_but_every_write_is_a_403_that_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    created = await client.post(API, headers=gold_org.headers, json=board(bar_tile()))
    assert created.status_code == 201, created.text
    url = f"{API}/{created.json()['id']}"
    viewer = await key_with_role(client, gold_org, "viewer")
    writes = [
        ("post", API, board(number_tile())),
        ("put", "/api/v1/flashboards/{flashboard_id}", board(bar_tile(), number_tile())),
        ("delete", "/api/v1/flashboards/{flashboard_id}", None),
        ("post", "/api/v1/flashboards/{flashboard_id}/refresh", None),
    ]
    # Every write route the API documents is tried here (a new one must join this list).
    documented = {
        (method, path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(API)
        for method in operations
        if method != "get"
    }
    assert documented == {(method, path) for method, path, _ in writes}

    async def state() -> tuple[Any, ...]:
        fetched = await client.get(url, headers=gold_org.headers)
        versions = await client.get(f"{url}/versions", headers=gold_org.headers)
        listed = await client.get(API, headers=gold_org.headers)
        cached = await client.get(f"{url}/data?cached=true", headers=gold_org.headers)
        assert fetched.status_code == versions.status_code == listed.status_code == cached.status_code == 200
        # No refresh has cached rows: ``cached=true`` runs the tiles now ("live").
        return fetched.json(), versions.json(), listed.json(), cached.json()["source"]

    before = await state()
    assert before[0]["current_version"] == 1 and [v["version"] for v in before[1]["items"]] == [1]
    assert before[3] == "live"
    for method, path, body in writes:
        target = path.replace("{flashboard_id}", created.json()["id"])
        response = await client.request(method.upper(), target, headers=viewer, json=body)
        problem = assert_problem(response, 403, "forbidden")
        assert "requires role member" in problem["detail"] and "viewer" in problem["detail"], (method, path)
    assert await state() == before  # the same flashboard, version, versions and no cache: nothing was written

    # Reads are a viewer's.
    for read in (API, url, f"{url}/versions", f"{url}/data", f"{url}/tiles/0/chart.svg"):
        assert (await client.get(read, headers=viewer)).status_code == 200, read


async def test_data_runs_every_tile_and_reports_a_failing_tile_on_its_own(
    app: FastAPI, client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    fragile = {"title": "Fragile", "sql": f"SELECT category, orders FROM {GOLD}", "type": "table"}
    created = (await client.post(API, headers=gold_org.headers, json=board(bar_tile(), fragile, number_tile()))).json()
    # The table loses a column the second tile reads: that tile fails, the others answer.
    publish_gold(app, gold_org, [{"order_date": "2026-11-03", "category": "books", "revenue": 10.0}])
    data = (await client.get(f"{API}/{created['id']}/data", headers=gold_org.headers)).json()
    assert data["source"] == "live" and data["version"] == 1
    chart, broken, number = data["tiles"]
    assert chart["rows"] == [["books", 10.0]] and chart["error"] is None
    assert broken["rows"] == [] and broken["error"]["type"].endswith("query-failed")
    assert "orders" in broken["error"]["detail"]
    assert number["error"]["status"] == 422


async def test_refresh_caches_the_rows_and_data_can_serve_them(
    app: FastAPI, client: httpx.AsyncClient, gold_org: OrgHandle
) -> None:
    created = (await client.post(API, headers=gold_org.headers, json=board(number_tile()))).json()
    url = f"{API}/{created['id']}"
    assert (await client.get(f"{url}/data?cached=true", headers=gold_org.headers)).json()["source"] == "live"
    refreshed = (await client.post(f"{url}/refresh", headers=gold_org.headers)).json()
    assert refreshed["tiles"][0]["rows"] == [[9]] and refreshed["refreshed_at"] is not None
    publish_gold(app, gold_org, [{"order_date": "2026-11-03", "category": "books", "orders": 1, "revenue": 1.0}])
    cached = (await client.get(f"{url}/data?cached=true", headers=gold_org.headers)).json()
    assert cached["source"] == "cache" and cached["tiles"][0]["rows"] == [[9]]
    live = (await client.get(f"{url}/data", headers=gold_org.headers)).json()
    assert live["source"] == "live" and live["tiles"][0]["rows"] == [[1]]


async def test_charts_render_as_svg_and_png_from_the_rows(client: httpx.AsyncClient, gold_org: OrgHandle) -> None:
    created = (await client.post(API, headers=gold_org.headers, json=board(bar_tile(), table_tile()))).json()
    url = f"{API}/{created['id']}/tiles"
    svg = await client.get(f"{url}/0/chart.svg", headers=gold_org.headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg") and svg.text.rstrip().endswith("</svg>")
    # The chart shows the data: both categories label the x axis, and the y axis reaches the largest sum (91.75).
    assert ">books<" in svg.text and ">games<" in svg.text and ">90<" in svg.text
    png = await client.get(f"{url}/0/chart.png", headers=gold_org.headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    for suffix in ("svg", "png"):
        no_chart = await client.get(f"{url}/1/chart.{suffix}", headers=gold_org.headers)
        assert no_chart.status_code == 404 and no_chart.json()["type"].endswith("tile-has-no-chart")
    assert (await client.get(f"{url}/7/chart.svg", headers=gold_org.headers)).status_code == 404


async def test_a_first_refresh_racing_another_replaces_its_cache_rather_than_failing(
    client: httpx.AsyncClient, gold_org: OrgHandle, monkeypatch: Any
) -> None:
    from virtuousai.flashboards.repository import FlashboardCacheRepository

    created = (await client.post(API, headers=gold_org.headers, json=board(number_tile()))).json()
    url = f"{API}/{created['id']}"
    assert (await client.post(f"{url}/refresh", headers=gold_org.headers)).status_code == 200  # the other refresh
    looked = FlashboardCacheRepository.of_flashboard
    seen: list[str] = []

    async def saw_none_first(self: Any, flashboard_id: str) -> Any:
        # This refresh looked before the other one committed: it saw no cache row, and inserts one.
        seen.append(flashboard_id)
        return None if len(seen) == 1 else await looked(self, flashboard_id)

    monkeypatch.setattr(FlashboardCacheRepository, "of_flashboard", saw_none_first)
    racing = await client.post(f"{url}/refresh", headers=gold_org.headers)
    assert racing.status_code == 200, racing.text
    assert len(seen) == 2  # the unique row was hit, and updated instead
    cached = (await client.get(f"{url}/data?cached=true", headers=gold_org.headers)).json()
    assert cached["source"] == "cache" and cached["refreshed_at"] == racing.json()["refreshed_at"]
