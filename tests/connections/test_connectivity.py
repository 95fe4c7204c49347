"""POST /connections/{ref}/test against real servers: PostgreSQL, MariaDB, SQLite and DuckDB files, and an HTTP API
on 127.0.0.1. A failed check is a 200 with ok=false and an error that never carries the secret."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pymysql
import pytest

from tests.conftest import OrgHandle
from tests.connections.conftest import CANARY
from tests.connections.http_server import bearer_server

API = "/api/v1/connections"
MYSQL_USER, MYSQL_PASSWORD = "vai_conn_probe", "probe-pw-1"


@pytest.fixture
def db_kind() -> str:
    # The probes do not depend on where connections are stored; the storage suites run on both databases.
    return "sqlite"


@pytest.fixture(scope="module")
def mysql_user() -> Iterator[str]:
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    except pymysql.err.OperationalError:
        pytest.skip("MariaDB is not reachable at 127.0.0.1:3306")
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}'")
        cursor.execute(f"GRANT SELECT ON test.* TO '{MYSQL_USER}'@'%'")
    yield MYSQL_USER
    admin.close()


async def _test(client: httpx.AsyncClient, org: OrgHandle, body: dict[str, Any]) -> dict[str, Any]:
    created = await client.post(API, headers=org.headers, json={"name": "probe", **body})
    assert created.status_code == 201, created.text
    response = await client.post(f"{API}/{created.json()['id']}/test", headers=org.headers)
    assert response.status_code == 200, response.text
    assert CANARY not in response.text
    result: dict[str, Any] = response.json()
    return result


def _pg(database: str, password: str = CANARY) -> dict[str, Any]:
    return {
        "provider": "postgres",
        "config": {"host": "127.0.0.1", "port": 5432, "database": database, "username": "postgres"},
        "secrets": {"password": password},
    }


async def test_postgres_ok_and_failing(client: httpx.AsyncClient, org: OrgHandle) -> None:
    ok = await _test(client, org, _pg("test"))
    assert ok["ok"] is True, ok
    assert ok["latency_ms"] > 0
    failing = await _test(client, org, _pg("no_such_database_" + CANARY.replace("-", "_")[:10]))
    assert failing["ok"] is False
    assert "does not exist" in failing["error"]


async def test_mysql_ok_and_wrong_password(client: httpx.AsyncClient, org: OrgHandle, mysql_user: str) -> None:
    config = {"host": "127.0.0.1", "port": 3306, "database": "test", "username": mysql_user}
    ok = await _test(client, org, {"provider": "mysql", "config": config, "secrets": {"password": MYSQL_PASSWORD}})
    assert ok == {"ok": True, "latency_ms": ok["latency_ms"], "error": None}
    wrong = await _test(client, org, {"provider": "mysql", "config": config, "secrets": {"password": CANARY}})
    assert wrong["ok"] is False
    assert "Access denied" in wrong["error"]


async def test_sqlite_and_duckdb_files(client: httpx.AsyncClient, org: OrgHandle, tmp_path: Path) -> None:
    sqlite_file, duckdb_file, not_a_db = tmp_path / "a.sqlite", tmp_path / "b.duckdb", tmp_path / "c.txt"
    sqlite3.connect(sqlite_file).execute("CREATE TABLE t (x)").connection.close()
    duckdb.connect(str(duckdb_file)).close()
    not_a_db.write_text("hello, this is not a database file at all" * 100)
    assert (await _test(client, org, {"provider": "sqlite", "config": {"path": str(sqlite_file)}}))["ok"] is True
    assert (await _test(client, org, {"provider": "duckdb", "config": {"path": str(duckdb_file)}}))["ok"] is True
    missing = await _test(client, org, {"provider": "sqlite", "config": {"path": str(tmp_path / "missing.db")}})
    assert missing["ok"] is False
    assert "no file" in missing["error"]
    garbage = await _test(client, org, {"provider": "sqlite", "config": {"path": str(not_a_db)}})
    assert garbage["ok"] is False


async def test_http_api_sends_the_credential_and_reports_rejection(client: httpx.AsyncClient, org: OrgHandle) -> None:
    with bearer_server(CANARY) as base_url:
        config = {"base_url": base_url, "auth_type": "bearer"}
        ok = await _test(client, org, {"provider": "http_api", "config": config, "secrets": {"token": CANARY}})
        assert ok["ok"] is True, ok
        rejected = await _test(client, org, {"provider": "http_api", "config": config, "secrets": {"token": "nope"}})
        assert rejected == {"ok": False, "latency_ms": rejected["latency_ms"], "error": rejected["error"]}
        assert "401" in rejected["error"]


async def test_providers_without_a_probe_say_so(client: httpx.AsyncClient, org: OrgHandle) -> None:
    result = await _test(client, org, {"provider": "tavily", "secrets": {"api_key": CANARY}})
    assert result["ok"] is False
    assert "no connectivity test" in result["error"]
