"""The fast query path: Arrow results as JSON, the deadline watchdog, the limit wrapper, the pre-serialised response.

Each shortcut is checked against the slow path it replaced: DuckDB's own rows through ``to_json_value``, the
sqlglot tree rendering of the wrapped query, the ``QueryResponse`` model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlglot
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from tests.conftest import OrgHandle
from tests.data.conftest import publish_rows
from tests.helpers import eventually_sync
from virtuousai.data.engine import (
    ARROW_JSON_TYPES,
    SMALL_RESULT_CELLS,
    LakeQueryEngine,
    QueryDeadlines,
    QueryLimits,
    json_rows,
    to_json_value,
)
from virtuousai.data.guard import SqlRejected, UnknownTable, guard_sql
from virtuousai.data.lake import TenantLake
from virtuousai.data.locked import LockedLake, Statement
from virtuousai.data.models import QueryResponse

# One column of every type the Arrow path takes, with the awkward values: NULLs, NaN and ±inf, extremes,
# decimals wider than a double, dates before 1000 and around the epoch, microseconds, zone offsets.
EVERY_ARROW_TYPE = """
SELECT * FROM (VALUES
  (true, (-128)::TINYINT, 32767::SMALLINT, (-2147483648)::INTEGER, 9007199254740993::BIGINT, 255::UTINYINT,
   65535::USMALLINT, 4294967295::UINTEGER, 18446744073709551615::UBIGINT, 1.1::FLOAT, 'NaN'::DOUBLE,
   123456789012345678.123456789::DECIMAL(38, 9), 'ünï "quoted" \\ text', '\\x00\\xFF'::BLOB, DATE '0044-03-15',
   TIMESTAMP '1969-12-31 23:59:59.999999', TIMESTAMPTZ '2024-03-31 01:30:00.5+00'),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'inf'::FLOAT, '-inf'::DOUBLE, -0.000000001::DECIMAL(38, 9),
   '', ''::BLOB, DATE '9999-12-31', TIMESTAMP '2024-01-01 00:00:00', TIMESTAMPTZ '1970-01-01 00:00:00+00'),
  (false, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
) AS t(bool, tiny, small, int, big, utiny, usmall, uint, ubig, f32, f64, dec, text, blob, day, ts, tstz)
"""


def _duckdb_rows(relation: duckdb.DuckDBPyRelation) -> list[list[Any]]:
    """The slow path: DuckDB's own Python rows, converted cell by cell."""
    return [[to_json_value(value) for value in row] for row in relation.fetchall()]


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York"])
def test_arrow_rows_equal_duckdbs_own_rows_for_every_fast_type(time_zone: str) -> None:
    con = duckdb.connect()
    try:
        con.execute(f"SET TimeZone = '{time_zone}'")
        relation = con.sql(EVERY_ARROW_TYPE)
        assert {kind.id for kind in relation.types} == ARROW_JSON_TYPES  # the query covers the whole list
        assert json_rows(relation.to_arrow_table()) == _duckdb_rows(relation)
    finally:
        con.close()


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = LakeQueryEngine(tmp_path / "lake", QueryLimits(threads=1, timeout_s=5))
    publish_rows(engine.lake("org_a"), "bronze.shop.orders", [{"id": i, "amount": i / 2} for i in range(3)])
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        # Python's datetime cannot hold these; DuckDB's row conversion clamps or spells them out.
        ("'infinity'::DATE AS d", [["9999-12-31"]]),
        ("'-infinity'::TIMESTAMP AS t", [["0001-01-01T00:00:00"]]),
        ("DATE '10000-01-01' AS d", [["10000-01-01"]]),
        # Types that take DuckDB's row conversion from the start.
        ("INTERVAL 90 MINUTE AS i, [1, 2] AS l, {'a': 1.5} AS s, 2::HUGEINT AS h", [[5400.0, [1, 2], {"a": 1.5}, 2]]),
        ("TIME '24:00:00' AS t", [["24:00:00"]]),
    ],
)
def test_values_arrow_cannot_convert_come_from_duckdbs_rows(
    engine: LakeQueryEngine, select: str, expected: list[list[Any]]
) -> None:
    assert engine.query("org_a", f"SELECT {select} FROM bronze.shop.orders LIMIT 1").rows == expected


# Seven columns of Arrow-path types, NULLs included, ``n`` rows.
MIXED_ROWS = (
    "SELECT x AS id, x / 4 AS quarter, 'n' || x AS label, DATE '2024-01-01' + x::INT AS day, "
    "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(x) AS at, (x * 1.25)::DECIMAL(18, 2) AS dec, "
    "CASE WHEN x % 7 = 0 THEN NULL ELSE x * 0.5 END AS maybe FROM range({n}) r(x) ORDER BY x"
)
MIXED_HEAD = SMALL_RESULT_CELLS // 7  # rows that come as Python rows before the rest goes through Arrow


@pytest.mark.parametrize("n", [0, MIXED_HEAD - 1, MIXED_HEAD, MIXED_HEAD + 1, 5 * MIXED_HEAD])
def test_small_and_large_results_convert_alike(engine: LakeQueryEngine, n: int) -> None:
    # Small results come from DuckDB's Python rows, larger ones start so and go on through Arrow: either way every
    # row equals DuckDB's own rows through to_json_value, in order.
    con = duckdb.connect()
    try:
        expected = _duckdb_rows(con.sql(MIXED_ROWS.format(n=n)))
    finally:
        con.close()
    assert engine.query("org_a", MIXED_ROWS.format(n=n)).rows == expected


def test_an_out_of_range_date_past_the_first_rows_comes_from_duckdbs_rows(engine: LakeQueryEngine) -> None:
    # Arrow cannot convert 'infinity' once the result is past its Python-row head, so the query runs again and
    # every row comes from DuckDB's row conversion.
    n = 3 * SMALL_RESULT_CELLS
    sql = (
        f"SELECT x AS id, CASE WHEN x = {n - 1} THEN 'infinity'::DATE ELSE DATE '2024-01-01' END AS d "
        f"FROM range({n}) r(x) ORDER BY x"
    )
    rows = engine.query("org_a", sql).rows
    assert len(rows) == n
    assert rows[0] == [0, "2024-01-01"]
    assert rows[-1] == [n - 1, "9999-12-31"]


def _statement(sql: str) -> Statement:
    guarded = guard_sql(sql)
    return Statement("org_a", guarded.limited_sql(10_001), guarded.tables, guarded.loc, timeout_s=5, limit_s=5)


@pytest.fixture
def locked(engine: LakeQueryEngine) -> Any:
    """The locked DuckDB in this process, as a query process runs it."""
    lake = LockedLake(engine.lake_dir, engine.limits)
    yield lake
    lake.close()


def test_the_arrow_path_comes_without_duckdbs_copy_warning(locked: LockedLake, recwarn: Any) -> None:
    # Past the Python-row head the engine reads Arrow off the cursor it executed on (one bind), which DuckDB
    # answers with a UserWarning about an extra copy. recwarn records every warning ("always"), so this sees one if
    # the engine's filter is off.
    result = locked.rows(_statement(MIXED_ROWS.format(n=2 * MIXED_HEAD)))
    assert len(result.rows) == 2 * MIXED_HEAD
    assert [str(w.message) for w in recwarn] == []


def test_a_large_result_is_capped_and_typed(tmp_path: Path) -> None:
    engine = LakeQueryEngine(tmp_path / "lake", QueryLimits(threads=1, row_cap=2_500))
    try:
        result = engine.query(
            "org_a",
            "SELECT x AS id, x / 4 AS quarter, 'n' || x AS label, DATE '2024-01-01' + x::INT AS day, "
            "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(x) AS at FROM range(3000) r(x) ORDER BY x",
        )
    finally:
        engine.close()
    assert result.truncated and len(result.rows) == 2_500
    assert [c.type for c in result.columns] == ["BIGINT", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP WITH TIME ZONE"]
    assert result.rows[1] == [1, 0.25, "n1", "2024-01-02", "2024-01-01T00:00:01+00:00"]
    assert result.rows[-1][0] == 2_499


# --- the deadline watchdog ------------------------------------------------------------------------------------


def test_deadlines_fire_in_order_and_never_after_disarm() -> None:
    deadlines = QueryDeadlines()
    fired: list[str] = []
    last = threading.Event()
    try:
        later = deadlines.arm(30.0, lambda: fired.append("later"))
        disarmed = deadlines.arm(0.05, lambda: fired.append("disarmed"))
        deadlines.disarm(disarmed)

        # Armed after a later one but due first: the watchdog is woken for it.
        def due() -> None:
            fired.append("due")
            last.set()

        deadlines.arm(0.1, due)
        assert last.wait(5.0)
        assert fired == ["due"]  # "disarmed" came due first and was skipped
        deadlines.disarm(later)
    finally:
        deadlines.close()


def test_the_watchdog_thread_ends_when_idle_and_comes_back() -> None:
    deadlines = QueryDeadlines(idle_exit_s=0.05)
    try:
        deadlines.disarm(deadlines.arm(0.01, lambda: None))
        assert deadlines.watching
        eventually_sync(lambda: not deadlines.watching, timeout=5, interval=0.005, what="the watchdog thread to end")
        fired = threading.Event()
        deadlines.arm(0.01, fired.set)
        assert fired.wait(5.0)
    finally:
        deadlines.close()
    eventually_sync(lambda: not deadlines.watching, timeout=5, interval=0.005, what="the watchdog thread to end")


def test_queries_share_one_watchdog_thread(locked: LockedLake) -> None:
    locked.rows(_statement("SELECT 1"))  # the first query with a deadline starts the watchdog thread
    before = {t.ident for t in threading.enumerate()}
    for _ in range(20):
        locked.rows(_statement("SELECT count(*) FROM bronze.shop.orders"))
    assert {t.ident for t in threading.enumerate()} <= before  # no thread per query


def test_the_api_process_starts_no_thread_per_query(engine: LakeQueryEngine) -> None:
    engine.query("org_a", "SELECT 1")
    before = {t.ident for t in threading.enumerate()}
    for _ in range(20):
        engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders")
    assert {t.ident for t in threading.enumerate()} <= before


# --- the LIMIT wrapper ----------------------------------------------------------------------------------------


def _tree_rendering(sql: str, row_limit: int) -> str:
    """How the wrapper used to be built: from a copy of the checked tree (the parsed text, a parenthesized query
    unwrapped, as the guard does)."""
    guard_sql(sql)  # accepted
    tree = sqlglot.parse_one(sql, read="duckdb")
    if isinstance(tree, exp.Subquery):
        tree = tree.this
    assert isinstance(tree, exp.Query)
    return exp.select("*").from_(tree.subquery("vai_result")).limit(row_limit).sql(dialect="duckdb")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM bronze.shop.orders",
        "SELECT 1 -- a */ ; DROP VIEW bronze.shop.orders",
        "SELECT 1 /* a */ /* b */ -- c */ x",
        "SELECT ')' AS \"a*/b\", ';' AS \"(\" FROM bronze.shop.orders ORDER BY 1 DESC LIMIT 3",
        "WITH c AS (SELECT id FROM bronze.shop.orders) SELECT * FROM c UNION ALL SELECT 2 ORDER BY 1",
        "(SELECT 1)",
        "FROM bronze.shop.orders",
    ],
)
def test_the_limit_wrapper_is_the_tree_rendering(sql: str) -> None:
    wrapped = guard_sql(sql).limited_sql(11)
    assert wrapped == _tree_rendering(sql, 11)
    (statement,) = sqlglot.parse(wrapped, read="duckdb")
    assert isinstance(statement, exp.Select) and statement.args["limit"].expression.name == "11"


@settings(max_examples=150, deadline=None)
@given(
    literal=st.text(max_size=20),
    alias=st.text(min_size=1, max_size=12),
    comment=st.text(max_size=20).filter(lambda c: "\n" not in c and "\r" not in c),
)
def test_no_literal_alias_or_comment_escapes_the_limit_wrapper(literal: str, alias: str, comment: str) -> None:
    quoted_literal = "'" + literal.replace("'", "''") + "'"
    quoted_alias = '"' + alias.replace('"', '""') + '"'
    sql = f"SELECT {quoted_literal} AS {quoted_alias}, id FROM bronze.shop.orders -- {comment}\nORDER BY 2"
    try:
        guarded = guard_sql(sql)
    except (SqlRejected, UnknownTable):
        return
    wrapped = guarded.limited_sql(5)
    assert wrapped == _tree_rendering(sql, 5)
    statements = [s for s in sqlglot.parse(wrapped, read="duckdb") if s is not None]
    assert len(statements) == 1 and isinstance(statements[0], exp.Select)


# --- the response ---------------------------------------------------------------------------------------------


async def test_the_response_is_a_query_response_for_many_rows_and_types(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle
) -> None:
    lake = TenantLake(app.state.settings.lake_dir, org.org_id)
    publish_rows(
        lake, "bronze.shop.orders", [{"id": i, "amount": i / 3, "note": None if i % 2 else "x"} for i in range(1_500)]
    )
    response = await client.post(
        "/api/v1/query",
        json={
            "sql": "SELECT id, amount, note, 'NaN'::DOUBLE AS nan, DATE '2024-02-29' AS day, [id] AS ids "
            "FROM bronze.shop.orders ORDER BY id",
            "limit": 1_200,
        },
        headers=org.headers,
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = QueryResponse.model_validate_json(response.content)
    assert body.truncated and len(body.rows) == 1_200
    assert body.rows[3] == [3, 1.0, None, None, "2024-02-29", [3]]
    assert [c.type for c in body.columns] == ["BIGINT", "DOUBLE", "VARCHAR", "DOUBLE", "DATE", "BIGINT[]"]
