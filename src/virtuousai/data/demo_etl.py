"""The demo ETL as plain data: the connections it needs and an automation spec (the ``automations/spec.py`` shape).

    extract_dimensions  dlt_extract   customers, products        → bronze.shop.*   (replace)
    extract_orders      dlt_extract   orders, order_items        → bronze.shop.*   (append, incremental on id)
    clean_orders        sql_transform bronze → silver.shop.orders_clean   one row per order line, cleaned
    daily_revenue       sql_transform silver → gold.shop.daily_revenue    revenue per day and category
    load_warehouse      load          gold.shop.daily_revenue → the "warehouse" SQLite file

The demo bootstrap creates the two connections from ``demo_connections(data_dir)``, generates the shop database
with ``demo_data.generate_shop_database(shop_path(data_dir))`` and creates the automation from ``DEMO_ETL``.

Money is DECIMAL from silver on (the source's REAL prices are cast once, on the way in), so a line's revenue is
rounded half-up on its exact value and the totals are exact sums, whatever the engine's float rounding would do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHOP_CONNECTION_SLUG = "demo-shop"
WAREHOUSE_CONNECTION_SLUG = "demo-warehouse"


def shop_path(data_dir: Path) -> Path:
    return data_dir / "demo" / "shop.db"


def warehouse_path(data_dir: Path) -> Path:
    return data_dir / "demo" / "warehouse.db"


def demo_connections(data_dir: Path) -> list[dict[str, Any]]:
    """Bodies for ``POST /api/v1/connections`` (SQLite files need no secrets)."""
    return [
        {
            "slug": SHOP_CONNECTION_SLUG,
            "name": "Demo shop (SQLite)",
            "provider": "sqlite",
            "config": {"path": str(shop_path(data_dir).resolve())},
        },
        {
            "slug": WAREHOUSE_CONNECTION_SLUG,
            "name": "Demo warehouse (SQLite)",
            "provider": "sqlite",
            "config": {"path": str(warehouse_path(data_dir).resolve())},
        },
    ]


CLEAN_ORDERS_SQL = """
SELECT
    o.id AS order_id,
    i.id AS order_line_id,
    o.customer_id,
    lower(c.email) AS customer_email,
    c.country,
    o.status,
    o.channel,
    CAST(o.ordered_at AS TIMESTAMP) AS ordered_at,
    CAST(CAST(o.ordered_at AS TIMESTAMP) AS DATE) AS order_date,
    i.product_id,
    p.category,
    i.quantity,
    CAST(i.unit_price AS DECIMAL(12, 2)) AS unit_price,
    CAST(i.discount AS DECIMAL(4, 2)) AS discount,
    round(i.quantity * CAST(i.unit_price AS DECIMAL(12, 2)) * (1 - CAST(i.discount AS DECIMAL(4, 2))), 2)
        AS line_revenue
FROM bronze.shop.orders AS o
JOIN bronze.shop.order_items AS i ON i.order_id = o.id
JOIN bronze.shop.products AS p ON p.id = i.product_id
JOIN bronze.shop.customers AS c ON c.id = o.customer_id
WHERE o.status NOT IN ('test', 'cancelled')
QUALIFY row_number() OVER (PARTITION BY i.id ORDER BY o.updated_at DESC) = 1
""".strip()

DAILY_REVENUE_SQL = """
SELECT
    order_date,
    category,
    count(DISTINCT order_id) AS orders,
    sum(quantity) AS units,
    sum(line_revenue) AS revenue
FROM silver.shop.orders_clean
WHERE status <> 'refunded'
GROUP BY order_date, category
ORDER BY order_date, category
""".strip()

DEMO_ETL: dict[str, Any] = {
    "name": "Demo shop ETL",
    "slug": "demo-shop-etl",
    "description": "Shop database → bronze → silver cleaned orders → gold daily revenue per category → warehouse.",
    "steps": [
        {
            "key": "extract_dimensions",
            "action": "dlt_extract",
            "inputs": {
                "connection": f"slug:{SHOP_CONNECTION_SLUG}",
                "dataset": "shop",
                "source": {"type": "sql_database", "tables": ["customers", "products"]},
                "write_disposition": "replace",
            },
        },
        {
            "key": "extract_orders",
            "action": "dlt_extract",
            "inputs": {
                "connection": f"slug:{SHOP_CONNECTION_SLUG}",
                "dataset": "shop",
                "source": {
                    "type": "sql_database",
                    "tables": ["orders", "order_items"],
                    "incremental": {"orders": "id", "order_items": "id"},
                },
                "write_disposition": "append",
            },
        },
        {
            "key": "clean_orders",
            "action": "sql_transform",
            "depends_on": ["extract_dimensions", "extract_orders"],
            "inputs": {
                "sql": CLEAN_ORDERS_SQL,
                "target": {"layer": "silver", "dataset": "shop", "table": "orders_clean"},
                "mode": "replace",
            },
        },
        {
            "key": "daily_revenue",
            "action": "sql_transform",
            "depends_on": ["clean_orders"],
            "inputs": {
                "sql": DAILY_REVENUE_SQL,
                "target": {"layer": "gold", "dataset": "shop", "table": "daily_revenue"},
                "mode": "replace",
            },
        },
        {
            "key": "load_warehouse",
            "action": "load",
            "depends_on": ["daily_revenue"],
            "inputs": {
                "source": "gold.shop.daily_revenue",
                "connection": f"slug:{WAREHOUSE_CONNECTION_SLUG}",
                "write_disposition": "replace",
            },
        },
    ],
    "triggers": [{"type": "manual"}],
}
