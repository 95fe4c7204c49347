"""The demo: a reproducible shop database and the ETL spec, run step by step through the real kinds."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from tests.data.conftest import make_context
from virtuousai.actions.registry import default_registry
from virtuousai.automations.spec import AutomationSpec
from virtuousai.automations.validation import validate_spec
from virtuousai.data.demo_data import add_orders, generate_shop_database
from virtuousai.data.demo_etl import DEMO_ETL, demo_connections, shop_path, warehouse_path
from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store import migrate
from virtuousai.store.engine import make_engine, make_sessionmaker

SMALL = {"customers": 300, "products": 60, "orders": 2_000}


def _dump(path: Path) -> list[Any]:
    with sqlite3.connect(path) as db:
        return [
            db.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            for t in ("customers", "products", "orders", "order_items")
        ]


def test_the_generator_is_reproducible_and_realistic(tmp_path: Path) -> None:
    first = generate_shop_database(tmp_path / "a.db", seed=3, **SMALL)
    generate_shop_database(tmp_path / "b.db", seed=3, **SMALL)
    assert _dump(tmp_path / "a.db") == _dump(tmp_path / "b.db")
    assert first.orders == 2_000 and first.order_items > first.orders
    with sqlite3.connect(tmp_path / "a.db") as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
        orphans = db.execute(
            "SELECT count(*) FROM order_items WHERE order_id NOT IN (SELECT id FROM orders)"
        ).fetchone()
    assert {"delivered", "refunded", "cancelled", "test"} <= set(statuses) and orphans == (0,)

    added = add_orders(tmp_path / "a.db", 50)
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT count(*), max(id) FROM orders").fetchone() == (2_050, 2_050)
    assert added.orders == 50


def test_the_demo_etl_is_a_valid_automation_spec() -> None:
    spec = AutomationSpec.model_validate(DEMO_ETL)
    assert validate_spec(spec, default_registry()) == []


def _context(data_dir: Path) -> ActionContext:
    connections = {
        f"slug:{c['slug']}": ResolvedConnection(
            id=f"conn_{c['slug'].replace('-', '_')}",
            slug=c["slug"],
            provider=c["provider"],
            config=c["config"],
            secrets={},
        )
        for c in demo_connections(data_dir)
    }
    return make_context(data_dir, connections=connections)


async def _run_etl(ctx: ActionContext) -> dict[str, Any]:
    outputs = {}
    for step in DEMO_ETL["steps"]:
        kind = default_registry().get(step["action"])
        outputs[step["key"]] = await kind.execute(ctx, kind.input_model.model_validate(step["inputs"]))
    return outputs


async def test_the_demo_etl_runs_offline_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    generate_shop_database(shop_path(data_dir), seed=1, **SMALL)
    ctx = _context(data_dir)

    outputs = await _run_etl(ctx)
    assert outputs["extract_orders"].rows["orders"] == 2_000
    assert outputs["daily_revenue"].table == "gold.shop.daily_revenue"

    # The expected total, exactly: each line's revenue rounded half-up on its decimal value, as silver does.
    with sqlite3.connect(shop_path(data_dir)) as db:
        lines = db.execute(
            "SELECT i.quantity, i.unit_price, i.discount FROM orders o JOIN order_items i ON i.order_id = o.id "
            "WHERE o.status NOT IN ('test', 'cancelled', 'refunded') AND o.customer_id IS NOT NULL"
        ).fetchall()
    cent = Decimal("0.01")
    expected = sum(
        (
            (q * Decimal(str(price)).quantize(cent) * (1 - Decimal(str(discount)).quantize(cent))).quantize(
                cent, ROUND_HALF_UP
            )
            for q, price, discount in lines
        ),
        Decimal(0),
    )
    with sqlite3.connect(warehouse_path(data_dir)) as db:
        (loaded,) = db.execute("SELECT sum(revenue) FROM daily_revenue").fetchone()
    assert Decimal(str(loaded)).quantize(cent) == expected

    # A second run after new orders extracts only those and the gold table follows.
    add_orders(shop_path(data_dir), 40)
    again = await _run_etl(ctx)
    assert again["extract_orders"].rows["orders"] == 40
    with closing(LakeQueryEngine(data_dir / "lake", QueryLimits(threads=1))) as engine:
        (count,) = engine.query(ctx.tenant_id, "SELECT count(DISTINCT order_id) FROM silver.shop.orders_clean").rows[0]
        assert count > 0
        await _explain_the_demo_lake(ctx, engine, data_dir)


async def _explain_the_demo_lake(ctx: ActionContext, engine: LakeQueryEngine, data_dir: Path) -> None:
    """explain_schema over the demo's three layers: every table, with facts that match the data."""
    database = make_engine(f"sqlite+aiosqlite:///{data_dir / 'vai.db'}")
    await migrate.upgrade(database)  # the descriptions are read from it (none written here)
    ctx.shared.get(LakeQueryEngine, lambda: engine)
    ctx._sessions = make_sessionmaker(database)
    try:
        kind = default_registry().get("explain_schema")
        out = await kind.execute(ctx, kind.input_model.model_validate({}))
    finally:
        await database.dispose()
    tables = {t.name: t for t in out.tables}
    assert set(tables) == {
        "bronze.shop.customers",
        "bronze.shop.products",
        "bronze.shop.orders",
        "bronze.shop.order_items",
        "silver.shop.orders_clean",
        "gold.shop.daily_revenue",
    }, set(tables)
    assert (tables["bronze.shop.orders"].rows, out.truncated) == (2_040, False)
    gold = {c.name: c for c in tables["gold.shop.daily_revenue"].columns}
    assert set(gold) == {"order_date", "category", "orders", "units", "revenue"}
    assert gold["revenue"].type.startswith("DECIMAL") and gold["revenue"].null_share == 0.0
    assert 0 < (gold["category"].distinct or 0) <= SMALL["products"] and len(gold["category"].samples) == 3
    orders = {c.name: c for c in tables["bronze.shop.orders"].columns}
    assert orders["id"].distinct is not None and abs(orders["id"].distinct - 2_040) < 2_040 * 0.1  # approximate
    assert 0 < (orders["customer_id"].null_share or 0) < 0.2  # the export's orders without a customer
