"""``generate_query`` and ``explain_schema`` through ``POST /api/v1/action-runs`` and an in-process worker: on the
lake, and on a connected PostgreSQL and MariaDB database (fresh databases on this machine's servers), with the
guard's attack set, the READ ONLY wall behind it, timeouts, and table descriptions."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
import pymysql
import pytest
from fastapi import FastAPI

from tests.conftest import IN_CI, PG_URL, OrgHandle
from tests.data.conftest import publish_rows, snapshot
from tests.runtime.conftest import FAST
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.data.lake import TenantLake

RUNS = "/api/v1/action-runs"
MYSQL_URL = os.environ.get("VAI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
ORDERS = [
    {"id": 1, "status": "paid", "amount": 10.5, "note": None},
    {"id": 2, "status": "paid", "amount": 20.0, "note": "gift"},
    {"id": 3, "status": "refunded", "amount": 5.0, "note": None},
    {"id": 4, "status": "open", "amount": 7.25, "note": None},
]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", query_timeout_s=2.0, **FAST)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def lake(settings: Settings, org: OrgHandle) -> TenantLake:
    lake = TenantLake(settings.lake_dir, org.org_id)
    publish_rows(lake, "bronze.shop.orders", ORDERS)
    return lake


async def run(client: httpx.AsyncClient, org: OrgHandle, kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{RUNS}?wait=30", headers=org.headers, json={"kind": kind, "inputs": inputs})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] in ("COMPLETED", "FAILED"), body
    return body


# --- the lake --------------------------------------------------------------------------------------------------


async def test_generate_query_runs_given_sql_on_the_lake_and_records_it(
    client: httpx.AsyncClient, org: OrgHandle, lake: TenantLake
) -> None:
    done = await run(
        client,
        org,
        "generate_query",
        {
            "question": "Revenue by status?",
            "sql": "select status, sum(amount) as revenue from bronze.shop.orders group by 1 order by 1",
        },
    )
    assert done["status"] == "COMPLETED", done
    out = done["output"]
    assert out["sql"] == (
        "SELECT status, SUM(amount) AS revenue FROM bronze.shop.orders GROUP BY 1 ORDER BY 1"
    )  # what ran: the guard's rendering
    assert [c["name"] for c in out["columns"]] == ["status", "revenue"]
    assert out["rows"] == [["open", 7.25], ["paid", 30.5], ["refunded", 5.0]]
    assert (out["row_count"], out["truncated"], out["source"], out["generated"]) == (3, False, "lake", False)
    assert out["model_usage"] is None

    limited = await run(
        client, org, "generate_query", {"question": "q", "sql": "SELECT id FROM bronze.shop.orders", "limit": 2}
    )
    assert (limited["output"]["row_count"], limited["output"]["truncated"]) == (2, True)


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("DELETE FROM bronze.shop.orders", "only a read-only query"),
        ("COPY (SELECT 1) TO '/tmp/vai-out.csv'", "only a read-only query"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
        ("ATTACH '/tmp/x.db' AS x", "only a read-only query"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT nosuch FROM bronze.shop.orders", "nosuch"),
        ("SELECT * FROM bronze.shop.nothing", "unknown table"),
    ],
)
async def test_the_guard_refuses_and_the_model_is_told_why(
    client: httpx.AsyncClient, org: OrgHandle, lake: TenantLake, sql: str, says: str
) -> None:
    before = snapshot(lake.root)
    failed = await run(client, org, "generate_query", {"question": "q", "sql": sql})
    assert failed["status"] == "FAILED"
    assert says in failed["error"]["message"], failed["error"]
    assert failed["error"]["sql"] == sql  # what was tried, for the model and the audit
    assert failed["attempt"] == 1  # refused for good, not retried
    assert snapshot(lake.root) == before
    assert not Path("/tmp/vai-out.csv").exists()


async def test_a_statement_that_runs_forever_is_stopped(
    client: httpx.AsyncClient, org: OrgHandle, lake: TenantLake
) -> None:
    spin = "SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3"
    failed = await run(client, org, "generate_query", {"question": "q", "sql": spin})
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "query-timeout", failed["error"]


async def test_explain_schema_on_the_lake_with_the_organizations_descriptions(
    client: httpx.AsyncClient, org: OrgHandle, lake: TenantLake
) -> None:
    path = "/api/v1/datasets/bronze/shop.orders/description"
    put = await client.put(
        path, headers=org.headers, json={"table": "One row per order.", "columns": {"amount": "USD, with tax"}}
    )
    assert put.status_code == 200, put.text
    assert (await client.get(path, headers=org.headers)).json()["columns"] == {"amount": "USD, with tax"}

    done = await run(client, org, "explain_schema", {"tables": ["bronze.shop.orders"]})
    assert done["status"] == "COMPLETED", done
    (table,) = done["output"]["tables"]
    assert (table["name"], table["rows"], table["description"]) == ("bronze.shop.orders", 4, "One row per order.")
    assert table["freshness_s"] >= 0 and table["published_at"].endswith("Z")
    columns = {c["name"]: c for c in table["columns"]}
    assert columns["amount"]["description"] == "USD, with tax"
    assert columns["status"]["distinct"] == 3
    assert columns["status"]["samples"] == ["paid", "refunded", "open"]
    assert columns["note"]["null_share"] == 0.75
    assert columns["id"]["null_share"] == 0.0

    unknown = await run(client, org, "explain_schema", {"tables": ["gold.shop.nothing"]})
    assert unknown["status"] == "FAILED" and "unknown table" in unknown["error"]["message"]


async def test_descriptions_must_fit_the_table_and_stay_in_the_organization(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle, lake: TenantLake
) -> None:
    path = "/api/v1/datasets/bronze/shop.orders/description"
    bad = await client.put(path, headers=org.headers, json={"table": "x", "columns": {"amout": "typo"}})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["loc"] == ["body", "columns", "amout"]
    assert (await client.get(path, headers=org.headers)).json()["updated_at"] is None  # nothing stored
    missing = await client.put(
        "/api/v1/datasets/bronze/shop.nothing/description", headers=org.headers, json={"table": "x"}
    )
    assert missing.status_code == 404
    assert (await client.put(path, headers=other_org.headers, json={"table": "mine"})).status_code == 404


# --- connected databases ---------------------------------------------------------------------------------------


def _pg_source() -> Iterator[dict[str, Any]]:
    parts = urlsplit(PG_URL)
    name = f"vai_src_{secrets.token_hex(4)}"
    admin = PG_URL.rpartition("/")[0] + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    with psycopg.connect(PG_URL.rpartition("/")[0] + f"/{name}", autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int primary key, status text, amount numeric(10,2), note text)")
        for row in ORDERS:
            conn.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", tuple(row.values()))
        conn.execute(
            "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS $$ INSERT INTO orders VALUES (99, 'x', 0, null) "
            "RETURNING 1 $$"
        )
    config = {"host": parts.hostname, "port": parts.port or 5432, "username": parts.username, "database": name}
    # Trust authentication here: any password is accepted, and the connection needs one.
    yield {"provider": "postgres", "config": config, "secrets": {"password": unquote(parts.password or "") or "x"}}
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _mysql_source() -> Iterator[dict[str, Any]]:
    parts = urlsplit(MYSQL_URL)
    name = f"vai_src_{secrets.token_hex(4)}"
    login = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }
    try:
        conn = pymysql.connect(**login, autocommit=True, connect_timeout=5)  # type: ignore[arg-type]
    except pymysql.err.OperationalError as exc:
        if IN_CI:
            raise
        pytest.skip(f"MySQL unreachable: {exc}")
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"USE `{name}`")
        cursor.execute("CREATE TABLE orders (id int primary key, status varchar(20), amount decimal(10,2), note text)")
        for row in ORDERS:
            cursor.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", tuple(row.values()))
        cursor.execute(
            "CREATE FUNCTION sneaky() RETURNS int MODIFIES SQL DATA "
            "BEGIN INSERT INTO orders VALUES (99, 'x', 0, null); RETURN 1; END"
        )
        # The connection's own user, allowed to write: what stops a write is the READ ONLY transaction.
        cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'pw-{name}'")
        cursor.execute(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY 'pw-{name}'")
        cursor.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'%'")
        cursor.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'localhost'")
    config = {"host": login["host"], "port": login["port"], "username": name, "database": name}
    yield {"provider": "mysql", "config": config, "secrets": {"password": f"pw-{name}"}}
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{name}`")
        cursor.execute(f"DROP USER '{name}'@'%'")
        cursor.execute(f"DROP USER '{name}'@'localhost'")
    conn.close()


@pytest.fixture(params=["postgres", "mariadb"])
def source(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    yield from (_pg_source() if request.param == "postgres" else _mysql_source())


def _source_rows(source: dict[str, Any]) -> int:
    config = source["config"]
    if source["provider"] == "postgres":
        url = PG_URL.rpartition("/")[0] + f"/{config['database']}"
        with psycopg.connect(url) as conn:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])  # type: ignore[index]
    conn = pymysql.connect(
        host=config["host"],
        port=config["port"],
        user=config["username"],
        password=source["secrets"]["password"],
        database=config["database"],
    )
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders")
        return int(cursor.fetchone()[0])  # type: ignore[index]


async def test_generate_query_and_explain_schema_on_a_connected_database(
    client: httpx.AsyncClient, org: OrgHandle, source: dict[str, Any]
) -> None:
    created = await client.post(
        "/api/v1/connections", headers=org.headers, json={**source, "name": "Shop DB", "slug": "shopdb"}
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    done = await run(
        client,
        org,
        "generate_query",
        {
            "question": "Paid revenue?",
            "connection": "slug:shopdb",
            "sql": "SELECT status, sum(amount) AS revenue FROM orders WHERE status LIKE 'p%' GROUP BY status",
        },
    )
    assert done["status"] == "COMPLETED", done
    out = done["output"]
    assert out["rows"] == [["paid", 30.5]]
    assert out["source"] == f"connection:{connection_id}"
    assert [c["name"] for c in out["columns"]] == ["status", "revenue"]

    wrong = await run(
        client, org, "generate_query", {"question": "q", "connection": "slug:shopdb", "sql": "SELECT amout FROM orders"}
    )
    assert wrong["status"] == "FAILED" and "amout" in wrong["error"]["message"], wrong["error"]

    refused = await run(
        client, org, "generate_query", {"question": "q", "connection": "slug:shopdb", "sql": "DELETE FROM orders"}
    )
    assert refused["status"] == "FAILED" and "only a read-only query" in refused["error"]["message"]
    # Past the guard (a function it cannot see into), the READ ONLY transaction still refuses the write.
    sneaky = await run(
        client, org, "generate_query", {"question": "q", "connection": "slug:shopdb", "sql": "SELECT sneaky()"}
    )
    assert sneaky["status"] == "FAILED", sneaky
    assert "read" in sneaky["error"]["message"].lower(), sneaky["error"]
    assert await asyncio.to_thread(_source_rows, source) == len(ORDERS)  # no row changed

    explained = await run(client, org, "explain_schema", {"connection": "slug:shopdb"})
    assert explained["status"] == "COMPLETED", explained
    (table,) = explained["output"]["tables"]
    assert (table["name"], table["rows"]) == ("orders", 4)
    columns = {c["name"]: c for c in table["columns"]}
    assert (columns["status"]["distinct"], columns["note"]["null_share"]) == (3, 0.75)
    assert columns["status"]["samples"][:1] == ["paid"]


async def test_a_long_statement_on_a_connected_database_is_stopped(
    client: httpx.AsyncClient, org: OrgHandle, source: dict[str, Any]
) -> None:
    await client.post("/api/v1/connections", headers=org.headers, json={**source, "name": "DB", "slug": "db"})
    forever = (
        "SELECT count(*) FROM generate_series(1, 100000000000) AS s"
        if source["provider"] == "postgres"
        else "SELECT count(*) FROM information_schema.columns a, information_schema.columns b, "
        "information_schema.columns c, information_schema.columns d"
    )
    failed = await run(client, org, "generate_query", {"question": "q", "connection": "slug:db", "sql": forever})
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "query-timeout", failed["error"]


async def test_a_connection_that_is_not_a_database_is_refused(
    client: httpx.AsyncClient, org: OrgHandle, lake: TenantLake
) -> None:
    await client.post(
        "/api/v1/connections",
        headers=org.headers,
        json={"provider": "tavily", "name": "T", "slug": "search", "secrets": {"api_key": "tvly-x"}},
    )
    failed = await run(client, org, "generate_query", {"question": "q", "connection": "slug:search", "sql": "SELECT 1"})
    assert failed["status"] == "FAILED" and "postgres or mysql" in failed["error"]["message"]
