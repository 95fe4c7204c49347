"""Flashboard tests: an organization whose lake has a small gold table (published as parquet, read by the real
lake engine) and tile bodies over it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.data.conftest import publish_rows
from virtuousai.data.lake import TenantLake

GOLD = "gold.shop.daily_revenue"
ROWS: list[dict[str, object]] = [
    {"order_date": date(2026, 11, 1), "category": "books", "orders": 3, "revenue": 30.5},
    {"order_date": date(2026, 11, 1), "category": "games", "orders": 1, "revenue": 59.0},
    {"order_date": date(2026, 11, 2), "category": "books", "orders": 5, "revenue": 61.25},
]


def publish_gold(app: FastAPI, org: OrgHandle, rows: list[dict[str, object]] | None = None) -> None:
    publish_rows(TenantLake(app.state.settings.lake_dir, org.org_id), GOLD, rows or ROWS)


def bar_tile(y: str = "revenue") -> dict[str, Any]:
    return {
        "title": "Revenue by category",
        "sql": f"SELECT category, sum(revenue) AS revenue FROM {GOLD} GROUP BY category ORDER BY category",
        "chart": {
            "mark": "bar",
            "encoding": {"x": {"field": "category", "type": "nominal"}, "y": {"field": y, "type": "quantitative"}},
        },
    }


def number_tile() -> dict[str, Any]:
    return {"title": "Orders", "sql": f"SELECT sum(orders) AS orders FROM {GOLD}", "type": "number"}


def table_tile() -> dict[str, Any]:
    return {"title": "Days", "sql": f"SELECT * FROM {GOLD} ORDER BY order_date, category", "type": "table"}


@pytest.fixture
async def gold_org(app: FastAPI, org: OrgHandle) -> OrgHandle:
    publish_gold(app, org)
    return org
