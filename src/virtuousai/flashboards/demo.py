"""The demo organization's flashboard: six tiles over the demo ETL's gold table (``gold.shop.daily_revenue``).

Its tiles are checked against the lake like any other, so it can only be saved once the ETL has published that
table: ``vai serve --demo`` creates it on a start that finds the table and no flashboard of this title yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.config import Settings
from virtuousai.data.engine import LakeQueryEngine
from virtuousai.data.lake import TableRef, TenantLake
from virtuousai.flashboards.models import FlashboardCreate
from virtuousai.flashboards.repository import FlashboardRepository
from virtuousai.flashboards.service import FlashboardService
from virtuousai.store.tenant import TenantContext

DEMO_FLASHBOARD_TITLE = "Demo shop"
GOLD = TableRef("gold", "shop", "daily_revenue")
_T = str(GOLD)


def _chart(mark: str, encoding: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": mark, "encoding": encoding}


DEMO_FLASHBOARD: dict[str, Any] = {
    "title": DEMO_FLASHBOARD_TITLE,
    "description": "The demo ETL's gold table: revenue, orders and units per day and category.",
    "tiles": [
        {
            "title": "Revenue per day",
            "sql": f"SELECT order_date, CAST(sum(revenue) AS DOUBLE) AS revenue FROM {_T} "
            "GROUP BY order_date ORDER BY order_date",
            "chart": _chart(
                "line",
                {"x": {"field": "order_date", "type": "temporal"}, "y": {"field": "revenue", "type": "quantitative"}},
            ),
        },
        {
            "title": "Revenue by category",
            "sql": f"SELECT category, CAST(sum(revenue) AS DOUBLE) AS revenue FROM {_T} "
            "GROUP BY category ORDER BY revenue DESC",
            "chart": _chart(
                "bar",
                {
                    "x": {"field": "category", "type": "nominal", "sort": "-y"},
                    "y": {"field": "revenue", "type": "quantitative"},
                },
            ),
        },
        {
            "title": "Orders per day by category",
            "sql": f"SELECT order_date, category, orders FROM {_T} ORDER BY order_date, category",
            "chart": _chart(
                "area",
                {
                    "x": {"field": "order_date", "type": "temporal"},
                    "y": {"field": "orders", "type": "quantitative", "stack": True},
                    "color": {"field": "category", "type": "nominal"},
                },
            ),
        },
        {
            "title": "Units by category",
            "sql": f"SELECT category, CAST(sum(units) AS BIGINT) AS units FROM {_T} GROUP BY category",
            "chart": _chart(
                "arc",
                {
                    "theta": {"field": "units", "type": "quantitative"},
                    "color": {"field": "category", "type": "nominal"},
                },
            ),
        },
        {
            "title": "Total revenue",
            "sql": f"SELECT CAST(sum(revenue) AS DOUBLE) AS revenue FROM {_T}",
            "type": "number",
        },
        {
            "title": "Best days",
            "sql": f"SELECT order_date, CAST(sum(revenue) AS DOUBLE) AS revenue, sum(orders) AS orders FROM {_T} "
            "GROUP BY order_date ORDER BY revenue DESC LIMIT 10",
            "type": "table",
        },
    ],
}


async def seed_demo_flashboard(session: AsyncSession, tenant: TenantContext, settings: Settings) -> str | None:
    """Create the demo flashboard if the gold table is there and the flashboard is not; its id, if it exists."""
    existing = await FlashboardRepository(session, tenant).by_title(DEMO_FLASHBOARD_TITLE)
    if existing is not None:
        return existing.id
    if TenantLake(settings.lake_dir, tenant.tenant_id).manifest(GOLD) is None:
        return None  # the ETL has not run yet
    engine = LakeQueryEngine.from_settings(settings)
    try:
        service = FlashboardService(session, tenant, engine, tile_row_cap=settings.flashboard_tile_row_cap)
        saved = await service.create(FlashboardCreate.model_validate(DEMO_FLASHBOARD))
    finally:
        engine.close()
    return saved.flashboard.id
