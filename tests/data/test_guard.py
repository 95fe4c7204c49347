"""The SQL guard: one read-only query over lake tables, nothing else, at any depth."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from virtuousai.data.guard import GUARD_MEMO_MAX_LENGTH, SqlRejected, UnknownTable, guard_sql
from virtuousai.data.lake import TableRef

ORDERS = TableRef("bronze", "shop", "orders")

# (SQL, a word the error must contain so the caller knows what was refused)
ATTACKS: list[tuple[str, str]] = [
    ("COMMIT; DROP VIEW bronze.shop.orders", "found 2"),
    ("SELECT 1; DROP VIEW bronze.shop.orders", "found 2"),
    ("/* harmless */ DELETE FROM bronze.shop.orders", "DELETE"),
    ("-- comment\nDELETE FROM bronze.shop.orders", "DELETE"),
    ("WITH doomed AS (SELECT 1) DELETE FROM bronze.shop.orders", "DELETE"),
    ("INSERT INTO bronze.shop.orders SELECT * FROM bronze.shop.orders", "INSERT"),
    ("UPDATE bronze.shop.orders SET id = 1", "UPDATE"),
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("DROP VIEW bronze.shop.orders", "DROP"),
    ("COPY (SELECT * FROM bronze.shop.orders) TO '/tmp/lake/org/bronze/x.csv'", "COPY"),
    ("COPY bronze.shop.orders TO 'out.parquet'", "COPY"),
    ("ATTACH '/tmp/other.db' AS other", "ATTACH"),
    ("DETACH bronze", "DETACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("RESET enable_external_access", "RESET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("EXPORT DATABASE '/tmp/x'", "parsed"),
    ("SELECT * INTO copied FROM bronze.shop.orders", "INTO"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
    (
        "SELECT * FROM read_parquet('/var/lake/org_other/bronze/shop/orders/data/v000001/part-00000.parquet')",
        "read_parquet",
    ),
    ("SELECT * FROM parquet_scan('x.parquet')", "parquet_scan"),
    ("SELECT * FROM read_json_auto('x.json')", "read_json"),
    ("SELECT * FROM read_text('/etc/hostname')", "read_text"),
    ("SELECT * FROM read_blob('/etc/hostname')", "read_blob"),
    ("SELECT * FROM glob('/*')", "glob"),
    ("SELECT * FROM sqlite_scan('x.db', 't')", "sqlite_scan"),
    ("SELECT * FROM postgres_scan('host=x', 'public', 't')", "postgres_scan"),
    ("SELECT * FROM query('DROP VIEW bronze.shop.orders')", "query"),
    ("SELECT * FROM query_table('bronze.shop.orders')", "query_table"),
    ("SELECT * FROM iceberg_scan('s3://b/t')", "iceberg_scan"),
    ("SELECT * FROM delta_scan('s3://b/t')", "delta_scan"),
    ("SELECT current_setting('allowed_paths')", "current_setting"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM bronze.shop.orders o, LATERAL (SELECT * FROM read_csv('/etc/passwd')) p", "read_csv"),
    ("SELECT (SELECT count(*) FROM read_parquet('/x/*.parquet')) AS n", "read_parquet"),
    ("SELECT * FROM bronze.shop.orders WHERE id IN (SELECT id FROM sqlite_scan('x', 't'))", "sqlite_scan"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables"),
    ("SELECT * FROM system.main.duckdb_settings", "system.main.duckdb_settings"),
    ("SELECT * FROM shop.orders", "shop.orders"),
    ("SELECT * FROM orders", "orders"),
    ("DESCRIBE bronze.shop.orders", "DESCRIBE"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("VACUUM", "VACUUM"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("", "found 0"),
]


@pytest.mark.parametrize(("sql", "named"), ATTACKS)
def test_guard_refuses_the_attack_and_names_what_it_refused(sql: str, named: str) -> None:
    with pytest.raises((SqlRejected, UnknownTable)) as caught:
        guard_sql(sql)
    assert named.lower() in caught.value.detail.lower()
    assert caught.value.status == 422
    assert caught.value.errors[0]["loc"] == ["body", "sql"]


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT * FROM bronze.shop.orders", {ORDERS}),
        ("from bronze.shop.orders", {ORDERS}),
        ("SELECT status, count(*) FROM BRONZE.Shop.Orders GROUP BY ALL ORDER BY 2 DESC", {ORDERS}),
        (
            "WITH big AS (SELECT * FROM bronze.shop.orders WHERE amount > 10) "
            "SELECT b.id, c.name FROM big b JOIN silver.shop.customers c ON c.id = b.customer_id",
            {ORDERS, TableRef("silver", "shop", "customers")},
        ),
        ("SELECT 1 AS x UNION ALL SELECT 2 EXCEPT SELECT 3", set()),
        ("SELECT * FROM range(3) r(x)", set()),
        ("SELECT x FROM unnest([1, 2]) AS u(x)", set()),
        ("SELECT bronze.shop.orders.id FROM bronze.shop.orders;", {ORDERS}),
    ],
)
def test_guard_accepts_read_only_queries_and_lists_their_lake_tables(sql: str, tables: set[TableRef]) -> None:
    guarded = guard_sql(sql)
    assert guarded.tables == tables
    # What runs is the regenerated tree: one read-only statement again.
    (statement,) = sqlglot.parse(guarded.limited_sql(10), read="duckdb")
    assert isinstance(statement, exp.Select)


FORBIDDEN_STATEMENTS = [sql for sql, _ in ATTACKS if sql]
decorations = st.sampled_from(["", " ", "\n", "/* x */ ", "-- c\n", "  /* multi\nline */\t"])


@settings(max_examples=300, deadline=None)
@given(
    prefix=decorations,
    suffix=st.sampled_from(["", ";", " ;", ";\n-- done", "; SELECT 1"]),
    statement=st.sampled_from(FORBIDDEN_STATEMENTS),
    flip_case=st.booleans(),
)
def test_no_decoration_of_a_forbidden_statement_gets_through(
    prefix: str, suffix: str, statement: str, flip_case: bool
) -> None:
    sql = prefix + (statement.swapcase() if flip_case else statement) + suffix
    with pytest.raises((SqlRejected, UnknownTable)):
        guard_sql(sql)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_either_refused_cleanly_or_one_read_only_query(text: str) -> None:
    try:
        guarded = guard_sql(text)
    except (SqlRejected, UnknownTable):
        return
    statements = [s for s in sqlglot.parse(guarded.sql, read="duckdb") if s is not None]
    assert len(statements) == 1
    assert isinstance(statements[0], exp.Select | exp.SetOperation)
    assert not list(statements[0].find_all(exp.Table)) or all(
        t.catalog in ("bronze", "silver", "gold") or len(t.parts) == 1 or not isinstance(t.this, exp.Identifier)
        for t in statements[0].find_all(exp.Table)
    )


@settings(max_examples=200, deadline=None)
@given(
    reader=st.sampled_from(["read_csv", "read_parquet", "read_json", "glob", "read_text", "sqlite_scan", "query"]),
    depth=st.integers(min_value=0, max_value=4),
)
def test_a_file_reader_is_refused_at_any_depth(reader: str, depth: int) -> None:
    inner = f"SELECT * FROM {reader}('/etc/passwd')"
    for level in range(depth):
        inner = (
            f"SELECT * FROM bronze.shop.orders WHERE id IN ({inner})"
            if level % 2
            else f"WITH c{level} AS ({inner}) SELECT * FROM c{level}"
        )
    with pytest.raises(SqlRejected, match=reader):
        guard_sql(inner)


# --- the memo of recent verdicts ------------------------------------------------------------------------------


def test_an_accepted_text_is_checked_once_and_shared() -> None:
    sql = "SELECT status, count(*) FROM bronze.shop.orders GROUP BY status -- memo"
    first = guard_sql(sql)
    assert guard_sql(sql) is first
    assert first.tables == frozenset({ORDERS})
    # Where errors point is part of the verdict: the same text from an action input is its own entry.
    from_input = guard_sql(sql, loc=("inputs", "sql"))
    assert from_input is not first
    assert from_input.loc == ("inputs", "sql") and first.loc == ("body", "sql")
    with pytest.raises(FrozenInstanceError):
        first.sql = "DROP VIEW bronze.shop.orders"  # type: ignore[misc]


def test_a_refused_text_is_refused_every_time() -> None:
    sql = "SELECT * FROM read_parquet('/etc/passwd') -- memo"
    for loc in [("body", "sql"), ("body", "sql"), ("inputs", "sql")]:
        with pytest.raises(SqlRejected) as refused:
            guard_sql(sql, loc=loc)
        assert refused.value.errors[0]["loc"] == list(loc)


def test_a_long_text_is_not_remembered() -> None:
    padding = " ".join(f"{i} AS c{i}," for i in range(GUARD_MEMO_MAX_LENGTH // 8))
    sql = f"SELECT {padding} id FROM bronze.shop.orders"
    assert len(sql) > GUARD_MEMO_MAX_LENGTH
    first, second = guard_sql(sql), guard_sql(sql)
    assert first == second and first is not second
