"""``dlt_extract`` from MySQL / MariaDB: a fresh database per test, an incremental re-run, typed values.

The server comes from ``VAI_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306/test``). Unreachable: the test
skips, except with ``CI=true``, where it fails (a CI run must not pass by skipping the only MySQL coverage).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pytest

from tests.conftest import IN_CI
from tests.data.conftest import make_context
from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.data.extract import ExtractFailed
from virtuousai.data.kinds import DltExtractInput, DltExtractOutput, dlt_extract
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import ActionContext, ResolvedConnection

MYSQL_URL = os.environ.get("VAI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


@dataclass(frozen=True)
class MySqlServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> MySqlServer:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
        )

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            connect_timeout=5,
        )


@dataclass(frozen=True)
class MySqlDatabase:
    server: MySqlServer
    name: str

    def execute(self, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        with self.server.connect(self.name) as connection, connection.cursor() as cursor:
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)

    def connection(self) -> ResolvedConnection:
        """As the connections primitive resolves a ``mysql`` connection (config + decrypted secrets)."""
        return ResolvedConnection(
            id="conn_mysql",
            slug="shop-mysql",
            provider="mysql",
            config={
                "host": self.server.host,
                "port": self.server.port,
                "database": self.name,
                "username": self.server.user,
            },
            secrets={"password": self.server.password},
        )


@pytest.fixture
def mysql_database() -> Iterator[MySqlDatabase]:
    """A database of its own (``vai_t_<random>``) and a user with a password that may use only it; both dropped."""
    admin_server = MySqlServer.from_url(MYSQL_URL)
    try:
        admin = admin_server.connect()
    except pymysql.err.OperationalError as exc:
        message = f"MySQL/MariaDB unreachable at {admin_server.host}:{admin_server.port}: {exc}"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    name = f"vai_t_{secrets.token_hex(6)}"
    # A real password (the connection's secret), so the test proves it reaches the server and nothing stores it.
    user = MySqlServer(admin_server.host, admin_server.port, name, f"pw-{secrets.token_urlsafe(12)}:@/%")
    with admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user.user, user.password))
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'%%'", (user.user,))
            yield MySqlDatabase(user, name)
        finally:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user.user,))
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


START = datetime(2024, 11, 1, 8, 30, 0, 250_000)


def _insert_orders(database: MySqlDatabase, ids: range) -> None:
    database.execute(
        "INSERT INTO orders (id, customer, amount, created_at, note) VALUES (%s, %s, %s, %s, %s)",
        [(i, f"c{i % 7}", Decimal(i) / 4, START + timedelta(hours=i), "ünïcødé" if i % 2 else None) for i in ids],
    )


async def _extract(ctx: ActionContext, **inputs: Any) -> DltExtractOutput:
    output = await dlt_extract.execute(ctx, DltExtractInput.model_validate(inputs))
    assert isinstance(output, DltExtractOutput)
    return output


def _query(ctx: ActionContext, sql: str) -> list[list[Any]]:
    engine = LakeQueryEngine(ctx.data_dir / "lake", QueryLimits(threads=1))
    try:
        return engine.query(ctx.tenant_id, sql).rows
    finally:
        engine.close()


async def test_mysql_incremental_rerun_loads_only_new_rows(tmp_path: Path, mysql_database: MySqlDatabase) -> None:
    mysql_database.execute(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(10, 2) NOT NULL, "
        "created_at DATETIME(6) NOT NULL, note TEXT NULL)"
    )
    _insert_orders(mysql_database, range(1, 51))
    ctx = make_context(tmp_path / "var", mysql_database.connection())
    source = {"type": "sql_database", "tables": ["orders"], "incremental": {"orders": "id"}}

    first = await _extract(ctx, connection="slug:shop-mysql", dataset="mysql_shop", source=source)
    assert first.rows == {"orders": 50} and first.tables[0].version == 1
    assert {c.name for c in first.schema_changes[0].added} >= {"id", "customer", "amount", "created_at", "note"}

    _insert_orders(mysql_database, range(51, 61))
    second = await _extract(ctx, connection="slug:shop-mysql", dataset="mysql_shop", source=source)
    assert second.rows == {"orders": 10}
    assert second.tables[0].total_rows == 60 and second.tables[0].version == 2

    nothing_new = await _extract(ctx, connection="slug:shop-mysql", dataset="mysql_shop", source=source)
    assert nothing_new.rows == {"orders": 0}

    # Every row once, values as the source holds them (decimal, microsecond datetime, UTF-8, NULL).
    assert _query(
        ctx,
        "SELECT count(*), count(DISTINCT id), sum(amount), count(note), min(note), "
        "strftime(max(created_at), '%Y-%m-%d %H:%M:%S.%f') FROM bronze.mysql_shop.orders",
    ) == [[60, 60, 457.5, 30, "ünïcødé", "2024-11-03 20:30:00.250000"]]

    password = mysql_database.server.password.encode()
    for path in ctx.data_dir.rglob("*"):
        if path.is_file():
            assert password not in path.read_bytes(), path


async def test_mysql_wrong_password_fails_without_echoing_it(tmp_path: Path, mysql_database: MySqlDatabase) -> None:
    mysql_database.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
    good = mysql_database.connection()
    wrong = f"wrong-{secrets.token_hex(8)}"
    ctx = make_context(tmp_path / "var", replace(good, secrets={"password": wrong}))
    with pytest.raises(ExtractFailed, match=r"could not read the source database: .*Access denied") as caught:
        await _extract(ctx, connection="c", dataset="mysql_shop", source={"type": "sql_database", "tables": ["orders"]})
    assert wrong not in str(caught.value)
    assert not (ctx.data_dir / "lake" / ctx.tenant_id / "bronze").exists()


async def test_mysql_unknown_table_and_cursor_column_are_named(tmp_path: Path, mysql_database: MySqlDatabase) -> None:
    mysql_database.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, amount DECIMAL(10, 2))")
    ctx = make_context(tmp_path / "var", mysql_database.connection())
    for source, named in (
        ({"type": "sql_database", "tables": ["ordrs"]}, "ordrs"),
        ({"type": "sql_database", "tables": ["orders"], "incremental": {"orders": "updated_at"}}, "updated_at"),
    ):
        with pytest.raises(ValidationFailed, match=named):
            await _extract(ctx, connection="c", dataset="mysql_shop", source=source)
    assert not (ctx.data_dir / "lake" / ctx.tenant_id / "bronze").exists()
