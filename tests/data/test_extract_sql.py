"""``dlt_extract`` from SQL databases (SQLite and PostgreSQL): incremental loads, schema contracts, cancellation."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_URL
from tests.data.conftest import make_context, snapshot
from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.data.kinds import DltExtractInput, DltExtractOutput, dlt_extract
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import ActionContext, Cancelled, ResolvedConnection


def _sqlite_source(path: Path, rows: range, *, extra_column: str | None = None) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL)")
        if extra_column:
            db.execute(f"ALTER TABLE orders ADD COLUMN {extra_column} TEXT")
        columns = "id, customer, amount" + (f", {extra_column}" if extra_column else "")
        marks = "?, ?, ?" + (", ?" if extra_column else "")
        db.executemany(
            f"INSERT INTO orders ({columns}) VALUES ({marks})",
            [(i, f"c{i % 7}", i * 2.5, *(["x"] if extra_column else [])) for i in rows],
        )


def _sqlite_connection(path: Path) -> ResolvedConnection:
    return ResolvedConnection(id="conn_sqlite", slug="shop", provider="sqlite", config={"path": str(path)}, secrets={})


async def _extract(ctx: ActionContext, **inputs: Any) -> DltExtractOutput:
    output = await dlt_extract.execute(ctx, DltExtractInput.model_validate(inputs))
    assert isinstance(output, DltExtractOutput)
    return output


def _count(ctx: ActionContext, table: str = "bronze.shop.orders") -> int:
    engine = LakeQueryEngine(ctx.data_dir / "lake", QueryLimits(threads=1))
    try:
        (row,) = engine.query(ctx.tenant_id, f"SELECT count(*) FROM {table}").rows
        return int(row[0])
    finally:
        engine.close()


INCREMENTAL = {"type": "sql_database", "tables": ["orders"], "incremental": {"orders": "id"}}


async def test_sqlite_incremental_rerun_loads_only_new_rows(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    _sqlite_source(source, range(1, 101))
    ctx = make_context(tmp_path / "var", _sqlite_connection(source))

    first = await _extract(ctx, connection="slug:shop", dataset="shop", source=INCREMENTAL)
    assert first.rows == {"orders": 100} and first.load_id and first.files_written >= 1
    assert first.tables[0].table == "bronze.shop.orders" and first.tables[0].version == 1
    assert first.schema_changes[0].added[0].name == "id"

    _sqlite_source(source, range(101, 111))
    second = await _extract(ctx, connection="slug:shop", dataset="shop", source=INCREMENTAL)
    assert second.rows == {"orders": 10}
    assert second.tables[0].total_rows == 110 and second.tables[0].version == 2
    assert second.schema_changes == []
    assert _count(ctx) == 110

    nothing_new = await _extract(ctx, connection="slug:shop", dataset="shop", source=INCREMENTAL)
    assert nothing_new.rows == {"orders": 0} and nothing_new.tables[0].version is None
    assert _count(ctx) == 110


async def test_floating_point_columns_are_doubles_without_a_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # SQLAlchemy 2.1 no longer derives Float (REAL, FLOAT, DOUBLE) from Numeric, which dlt looks for: without
    # sources.float_as_double, dlt warned "unknown data type REAL" for each such column on every run.
    source = tmp_path / "shop.db"
    _sqlite_source(source, range(1, 11))  # amount REAL
    with sqlite3.connect(source) as db:
        db.execute("ALTER TABLE orders ADD COLUMN weight FLOAT")
        db.execute("ALTER TABLE orders ADD COLUMN ratio DOUBLE")
    ctx = make_context(tmp_path / "var", _sqlite_connection(source))
    out = await _extract(ctx, connection="slug:shop", dataset="shop", source=INCREMENTAL)
    types = {column.name: column.type for column in out.schema_changes[0].added}
    assert (types["amount"], types["weight"], types["ratio"]) == ("DOUBLE", "DOUBLE", "DOUBLE"), types
    assert "unknown data type" not in capfd.readouterr().err


async def test_replace_and_merge_dispositions(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    _sqlite_source(source, range(1, 21))
    ctx = make_context(tmp_path / "var", _sqlite_connection(source))
    full = {"type": "sql_database", "tables": ["orders"]}
    await _extract(ctx, connection="c", dataset="shop", source=full, write_disposition="replace")
    await _extract(ctx, connection="c", dataset="shop", source=full, write_disposition="replace")
    assert _count(ctx) == 20

    with sqlite3.connect(source) as db:
        db.execute("UPDATE orders SET amount = -1 WHERE id <= 5")
        db.execute("INSERT INTO orders VALUES (21, 'new', 1.0)")
    merged = await _extract(
        ctx, connection="c", dataset="shop", source=full, write_disposition="merge", primary_key={"orders": ["id"]}
    )
    assert merged.tables[0].total_rows == 21
    with closing(LakeQueryEngine(ctx.data_dir / "lake", QueryLimits(threads=1))) as engine:
        result = engine.query(
            ctx.tenant_id, "SELECT count(*) FILTER (amount = -1), count(DISTINCT id) FROM bronze.shop.orders"
        )
    assert result.rows == [[5, 21]]


async def test_schema_evolves_and_freeze_refuses_a_new_column(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    _sqlite_source(source, range(1, 11))
    ctx = make_context(tmp_path / "var", _sqlite_connection(source))
    await _extract(ctx, connection="c", dataset="shop", source=INCREMENTAL)

    _sqlite_source(source, range(11, 16), extra_column="channel")
    evolved = await _extract(ctx, connection="c", dataset="shop", source=INCREMENTAL)
    (change,) = evolved.schema_changes
    assert change.table == "orders" and [c.name for c in change.added] == ["channel"]
    with closing(LakeQueryEngine(ctx.data_dir / "lake", QueryLimits(threads=1))) as engine:
        rows = engine.query(ctx.tenant_id, "SELECT count(channel), count(*) FROM bronze.shop.orders").rows
    assert rows == [[5, 15]]

    _sqlite_source(source, range(16, 21), extra_column="coupon")
    before = snapshot(ctx.data_dir / "lake")
    with pytest.raises(ValidationFailed, match="coupon"):
        await _extract(ctx, connection="c", dataset="shop", source=INCREMENTAL, schema_contract="freeze")
    assert snapshot(ctx.data_dir / "lake") == before
    # The refused run did not move the cursor: evolving picks the same rows up.
    again = await _extract(ctx, connection="c", dataset="shop", source=INCREMENTAL)
    assert again.rows == {"orders": 5}


async def test_cancelled_extract_leaves_the_previous_version_readable(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    _sqlite_source(source, range(1, 1001))
    seen: list[str] = []

    def cancel_on_first_chunk(kind: str, data: Mapping[str, Any]) -> None:
        seen.append(kind)
        if cancelling:
            ctx.cancel.cancel("test cancels")

    cancelling = False
    ctx = make_context(tmp_path / "var", _sqlite_connection(source), on_event=cancel_on_first_chunk)
    small_chunks = {**INCREMENTAL, "chunk_size": 100}
    await _extract(ctx, connection="c", dataset="shop", source=small_chunks)
    assert "extract.progress" in seen

    _sqlite_source(source, range(1001, 6001))
    before = snapshot(ctx.data_dir / "lake")
    cancelling = True
    with pytest.raises(Cancelled):
        await _extract(ctx, connection="c", dataset="shop", source=small_chunks)
    assert snapshot(ctx.data_dir / "lake") == before
    assert _count(ctx) == 1000
    assert not list((ctx.data_dir / "dlt").rglob("work-*"))  # the cancelled run's copy of the state is gone

    retry = make_context(ctx.data_dir, _sqlite_connection(source), tenant_id=ctx.tenant_id)
    resumed = await _extract(retry, connection="c", dataset="shop", source=small_chunks)
    assert resumed.rows == {"orders": 5000}
    assert _count(retry) == 6000


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ({"type": "sql_database", "tables": ["ordrs"]}, "ordrs"),
        ({"type": "sql_database", "tables": ["orders"], "incremental": {"orders": "updated"}}, "updated"),
        ({"type": "sql_database", "tables": ["orders"], "incremental": {"customers": "id"}}, "customers"),
    ],
)
async def test_bad_tables_and_cursor_columns_are_named(tmp_path: Path, source: dict[str, Any], named: str) -> None:
    path = tmp_path / "shop.db"
    _sqlite_source(path, range(1, 3))
    ctx = make_context(tmp_path / "var", _sqlite_connection(path))
    with pytest.raises(ValidationFailed, match=named) as caught:
        await _extract(ctx, connection="c", dataset="shop", source=source)
    assert caught.value.errors[0]["loc"][:2] == ["inputs", "source"]
    assert not (ctx.data_dir / "lake" / ctx.tenant_id / "bronze").exists()


# --- PostgreSQL -----------------------------------------------------------------------------------------------


@pytest.fixture
def pg_table() -> Iterator[str]:
    try:
        connection = psycopg.connect(PG_URL, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    name = f"orders_{secrets.token_hex(4)}"
    with connection:
        connection.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, customer text, amount numeric(10, 2), "
            "created_at timestamptz NOT NULL DEFAULT now())"
        )
        yield name
        connection.execute(f"DROP TABLE IF EXISTS {name}")


def _pg_insert(table: str, rows: range) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (id, customer, amount) VALUES (%s, %s, %s)", [(i, f"c{i}", i / 4) for i in rows]
        )


@pytest.mark.postgres
async def test_postgres_incremental_rerun_and_no_secret_at_rest(tmp_path: Path, pg_table: str) -> None:
    _pg_insert(pg_table, range(1, 51))
    canary = f"canary-{secrets.token_hex(8)}"  # trust auth ignores it; it must still never be written anywhere
    _, _, rest = PG_URL.partition("://")
    user_host, _, database = rest.rpartition("/")
    user, _, host_port = user_host.rpartition("@")
    host, _, port = host_port.partition(":")
    connection = ResolvedConnection(
        id="conn_pg",
        slug="warehouse",
        provider="postgres",
        config={"host": host, "port": int(port or 5432), "database": database, "username": user or "postgres"},
        secrets={"password": canary},
    )
    ctx = make_context(tmp_path / "var", connection)
    source = {"type": "sql_database", "tables": [pg_table], "incremental": {pg_table: "id"}}

    first = await _extract(ctx, connection="slug:warehouse", dataset="pg", source=source)
    assert first.rows == {pg_table: 50}
    _pg_insert(pg_table, range(51, 61))
    second = await _extract(ctx, connection="slug:warehouse", dataset="pg", source=source)
    assert second.rows == {pg_table: 10}
    assert _count(ctx, f"bronze.pg.{pg_table}") == 60

    for path in ctx.data_dir.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
