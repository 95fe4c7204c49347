"""The locked DuckDB executor: the wall that holds even when the guard is bypassed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.data.conftest import publish_rows, snapshot
from virtuousai.data.engine import LakeQueryEngine, QueryFailed, QueryLimits, QueryTimedOut
from virtuousai.data.guard import SqlRejected, UnknownTable, guard_sql
from virtuousai.data.lake import TenantLake


@dataclass
class Lakes:
    engine: LakeQueryEngine
    lake_dir: Path
    mine: TenantLake
    theirs: TenantLake


@pytest.fixture
def lakes(tmp_path: Path) -> Iterator[Lakes]:
    lake_dir = tmp_path / "lake"
    engine = LakeQueryEngine(lake_dir, QueryLimits(row_cap=50, timeout_s=5, threads=1, memory_limit="256MB"))
    mine, theirs = engine.lake("org_a"), engine.lake("org_b")
    publish_rows(mine, "bronze.shop.orders", [{"id": i, "amount": i * 1.5, "status": "paid"} for i in range(100)])
    publish_rows(theirs, "bronze.shop.orders", [{"id": 1, "amount": 999.0, "status": "secret"}])
    yield Lakes(engine, lake_dir, mine, theirs)
    engine.close()


def _other_org_file(lakes: Lakes) -> str:
    manifest = lakes.theirs.manifests()[0]
    return str(lakes.theirs.absolute_files(manifest)[0])


def _attacks(lakes: Lakes) -> list[str]:
    inside_lake = lakes.mine.root / "bronze" / "shop" / "orders" / "data" / "stolen.parquet"
    own_file = lakes.mine.absolute_files(lakes.mine.manifests()[0])[0]
    return [
        "COMMIT; DROP VIEW bronze.shop.orders",
        "/* harmless */ DELETE FROM bronze.shop.orders",
        "WITH doomed AS (SELECT 1) DELETE FROM bronze.shop.orders",
        f"COPY (SELECT * FROM bronze.shop.orders) TO '{inside_lake}' (FORMAT parquet)",
        f"COPY (SELECT 1 AS x) TO '{lakes.mine.root}/evil.csv'",
        f"COPY (SELECT 1 AS x) TO '{own_file}.tmp' (FORMAT parquet)",
        f"ATTACH '{lakes.mine.root}/attached.db' AS attached",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_parquet('{_other_org_file(lakes)}')",
        f"SELECT * FROM glob('{lakes.theirs.root}/**')",
    ]


def test_every_attack_is_refused_by_the_guard(lakes: Lakes) -> None:
    before = snapshot(lakes.lake_dir)
    for sql in _attacks(lakes):
        with pytest.raises((SqlRejected, UnknownTable)):
            lakes.engine.query("org_a", sql)
    assert snapshot(lakes.lake_dir) == before


def test_every_attack_is_refused_by_the_locked_duckdb_itself(lakes: Lakes) -> None:
    """Bypass the guard: send each attack straight to a locked instance. DuckDB refuses; no file appears."""
    before = snapshot(lakes.lake_dir)
    for sql in _attacks(lakes):
        con = lakes.engine.locked_connection("org_a")
        try:
            # DELETE and the dropped view only ever touch this throw-away in-memory catalog, never the lake.
            if sql.startswith(("COMMIT", "/*", "WITH")):
                with pytest.raises(duckdb.Error):
                    con.execute(sql)
                continue
            with pytest.raises(duckdb.Error) as caught:
                con.execute(sql).fetchall()
            assert isinstance(caught.value, duckdb.PermissionException | duckdb.InvalidInputException), sql
        finally:
            con.close()
    assert snapshot(lakes.lake_dir) == before
    assert lakes.engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders").rows == [[100]]


def test_settings_stay_locked_on_the_pooled_instance(lakes: Lakes) -> None:
    lakes.engine.query("org_a", "SELECT 1")
    con = lakes.engine.locked_connection("org_a")
    try:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('enable_external_access', 'lock_configuration', 'allowed_directories', 'threads')"
            ).fetchall()
        )
    finally:
        con.close()
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "allowed_directories": "[]",
        "threads": "1",
    }


def test_query_reads_only_its_own_organization(lakes: Lakes) -> None:
    mine = lakes.engine.query("org_a", "SELECT max(amount), count(*) FROM bronze.shop.orders")
    theirs = lakes.engine.query("org_b", "SELECT max(amount), count(*) FROM bronze.shop.orders")
    assert mine.rows == [[148.5, 100]]
    assert theirs.rows == [[999.0, 1]]


def test_row_cap_truncates_and_says_so(lakes: Lakes) -> None:
    capped = lakes.engine.query("org_a", "SELECT id FROM bronze.shop.orders ORDER BY id")
    assert len(capped.rows) == 50 and capped.truncated
    assert capped.rows[:3] == [[0], [1], [2]]
    limited = lakes.engine.query("org_a", "SELECT id FROM bronze.shop.orders ORDER BY id DESC", limit=5)
    assert limited.rows == [[99], [98], [97], [96], [95]] and limited.truncated
    whole = lakes.engine.query("org_a", "SELECT id FROM bronze.shop.orders WHERE id < 10")
    assert len(whole.rows) == 10 and not whole.truncated
    assert [(c.name, c.type) for c in whole.columns] == [("id", "BIGINT")]


def test_a_slow_query_is_interrupted_at_the_time_limit(tmp_path: Path) -> None:
    with closing(LakeQueryEngine(tmp_path / "lake", QueryLimits(timeout_s=0.3, threads=1))) as engine:
        engine.warm()  # the limit counts a process's start-up (~0.6 s), which is not what this is about
        with pytest.raises(QueryTimedOut, match=r"longer than 0\.3 s"):
            engine.query("org_a", "SELECT count(*) FROM range(100000000000) a(x) WHERE x % 7 = 3")


def test_unknown_tables_and_columns_are_named(lakes: Lakes) -> None:
    with pytest.raises(UnknownTable, match=r"bronze\.shop\.missing"):
        lakes.engine.query("org_a", "SELECT * FROM bronze.shop.missing")
    with pytest.raises(QueryFailed, match="nope"):
        lakes.engine.query("org_a", "SELECT nope FROM bronze.shop.orders")


def test_a_new_version_is_visible_to_the_next_query(lakes: Lakes) -> None:
    assert lakes.engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders").rows == [[100]]
    publish_rows(lakes.mine, "bronze.shop.orders", [{"id": 1000, "amount": 1.0, "status": "new"}], mode="append")
    assert lakes.engine.query("org_a", "SELECT count(*) FROM bronze.shop.orders").rows == [[101]]
    publish_rows(lakes.mine, "bronze.shop.orders", [{"id": 1, "amount": 1.0, "status": "x", "extra": "y"}])
    result = lakes.engine.query("org_a", "SELECT * FROM bronze.shop.orders")
    assert result.rows == [[1, 1.0, "x", "y"]]


def test_guarded_sql_is_what_runs(lakes: Lakes) -> None:
    guarded = guard_sql("select status, count(*) n from bronze.shop.orders group by status")
    result = lakes.engine.run("org_a", guarded)
    assert result.rows == [["paid", 100]]
