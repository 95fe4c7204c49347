"""``sql_transform`` (guarded SQL → silver/gold) and ``load`` (a lake table → SQLite, DuckDB, PostgreSQL)."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from tests.conftest import PG_URL
from tests.data.conftest import lake_of, make_context, publish_rows, snapshot
from virtuousai.data.guard import SqlRejected, UnknownTable
from virtuousai.data.kinds import LoadInput, LoadOutput, SqlTransformInput, SqlTransformOutput, load, sql_transform
from virtuousai.runtime.context import ActionContext, ResolvedConnection

ORDERS = [
    {"id": 1, "day": "2024-01-01", "category": "books", "amount": 10.0, "status": "paid"},
    {"id": 2, "day": "2024-01-01", "category": "books", "amount": 5.0, "status": "paid"},
    {"id": 3, "day": "2024-01-01", "category": "games", "amount": 20.0, "status": "refunded"},
    {"id": 4, "day": "2024-01-02", "category": "games", "amount": 30.0, "status": "paid"},
]
DAILY = (
    "SELECT day, category, sum(amount) AS revenue, count(*) AS orders FROM bronze.shop.orders "
    "WHERE status = 'paid' GROUP BY ALL ORDER BY day, category"
)


async def _transform(ctx: ActionContext, **inputs: Any) -> SqlTransformOutput:
    output = await sql_transform.execute(ctx, SqlTransformInput.model_validate(inputs))
    assert isinstance(output, SqlTransformOutput)
    return output


async def _load(ctx: ActionContext, **inputs: Any) -> LoadOutput:
    output = await load.execute(ctx, LoadInput.model_validate(inputs))
    assert isinstance(output, LoadOutput)
    return output


async def test_transform_publishes_gold_and_appends(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "var")
    publish_rows(lake_of(ctx), "bronze.shop.orders", ORDERS)
    target = {"layer": "gold", "dataset": "shop", "table": "daily_revenue"}

    first = await _transform(ctx, sql=DAILY, target=target)
    assert first.table == "gold.shop.daily_revenue" and first.rows == 2 and first.version == 1
    assert first.sources == ["bronze.shop.orders"]
    assert [c.name for c in first.columns] == ["day", "category", "revenue", "orders"]

    again = await _transform(ctx, sql=DAILY, target=target, mode="append")
    assert again.total_rows == 4 and again.version == 2
    replaced = await _transform(ctx, sql="SELECT 1 AS one", target=target)
    assert replaced.total_rows == 1 and replaced.schema_change is not None
    assert [c.name for c in replaced.schema_change.added] == ["one"]


async def test_transform_refuses_unguarded_sql_and_changes_nothing(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "var")
    lake = lake_of(ctx)
    publish_rows(lake, "bronze.shop.orders", ORDERS)
    before = snapshot(lake.root.parent)
    target = {"layer": "silver", "dataset": "shop", "table": "clean"}
    with pytest.raises(SqlRejected, match="COPY") as caught:
        await _transform(ctx, sql=f"COPY bronze.shop.orders TO '{lake.root}/x.csv'", target=target)
    assert caught.value.errors[0]["loc"] == ["inputs", "sql"]
    with pytest.raises(SqlRejected, match="read_csv"):
        await _transform(ctx, sql="SELECT * FROM read_csv('/etc/passwd')", target=target)
    with pytest.raises(UnknownTable, match=r"bronze\.shop\.customers"):
        await _transform(ctx, sql="SELECT * FROM bronze.shop.customers", target=target)
    assert snapshot(lake.root.parent) == before


async def _gold(tmp_path: Path, connection: ResolvedConnection) -> ActionContext:
    ctx = make_context(tmp_path / "var", connection)
    publish_rows(lake_of(ctx), "bronze.shop.orders", ORDERS)
    await _transform(ctx, sql=DAILY, target={"layer": "gold", "dataset": "shop", "table": "daily_revenue"})
    return ctx


async def test_load_into_a_sqlite_warehouse_replaces(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.db"
    connection = ResolvedConnection(
        id="conn_wh", slug="wh", provider="sqlite", config={"path": str(warehouse)}, secrets={}
    )
    ctx = await _gold(tmp_path, connection)
    for _ in range(2):  # replace twice: still one copy
        output = await _load(ctx, source="gold.shop.daily_revenue", connection="slug:wh")
        assert output.rows == 2 and output.table == "daily_revenue" and output.load_id
    with sqlite3.connect(warehouse) as db:
        rows = db.execute("SELECT day, category, revenue FROM daily_revenue ORDER BY day").fetchall()
    assert rows == [("2024-01-01", "books", 15.0), ("2024-01-02", "games", 30.0)]


async def test_load_into_duckdb_and_unknown_source(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    connection = ResolvedConnection(id="conn_dd", slug="dd", provider="duckdb", config={"path": str(path)}, secrets={})
    ctx = await _gold(tmp_path, connection)
    output = await _load(ctx, source="gold.shop.daily_revenue", connection="c", dataset="analytics")
    assert output.rows == 2
    with duckdb.connect(str(path), read_only=True) as db:
        assert db.execute("SELECT sum(revenue) FROM analytics.daily_revenue").fetchone() == (45.0,)
    with pytest.raises(Exception, match=r"gold\.shop\.nope"):
        await _load(ctx, source="gold.shop.nope", connection="c")


@pytest.mark.postgres
async def test_load_into_postgres(tmp_path: Path) -> None:
    try:
        admin = psycopg.connect(PG_URL, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    schema = f"wh_{secrets.token_hex(4)}"
    _, _, rest = PG_URL.partition("://")
    user_host, _, database = rest.rpartition("/")
    user, _, host_port = user_host.rpartition("@")
    host, _, port = host_port.partition(":")
    connection = ResolvedConnection(
        id="conn_pg",
        slug="pg",
        provider="postgres",
        config={"host": host, "port": int(port or 5432), "database": database, "username": user or "postgres"},
        secrets={"password": "unused-by-trust-auth"},
    )
    ctx = await _gold(tmp_path, connection)
    try:
        output = await _load(ctx, source="gold.shop.daily_revenue", connection="c", dataset=schema)
        assert output.rows == 2
        (total,) = admin.execute(f"SELECT sum(revenue) FROM {schema}.daily_revenue").fetchone() or (None,)
        assert total == 45.0
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
