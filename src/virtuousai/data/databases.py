"""Guarded SQL on a connected PostgreSQL or MySQL/MariaDB database, for ``generate_query`` and ``explain_schema``.

The guard (``guard_database_sql``) is the first wall. The database is the second: every statement runs in a
``READ ONLY`` transaction that is always rolled back, under a server-side statement timeout (PostgreSQL
``statement_timeout``, MariaDB ``max_statement_time``, MySQL ``max_execution_time``), and at most the row cap's rows
are fetched. What the connection's user may read is the database's own grants.

Blocking (SQLAlchemy's sync drivers, the ones ``dlt_extract`` uses): call it in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import psycopg
import pymysql
import sqlalchemy as sa
from sqlglot import exp

from virtuousai.data.errors import QueryFailed, QueryTimedOut
from virtuousai.data.guard import DatabaseStatement, guard_database_sql
from virtuousai.data.locked import to_json_value
from virtuousai.data.sources import sql_engine
from virtuousai.errors import VaiError
from virtuousai.runtime.context import ResolvedConnection

# PostgreSQL query_canceled; MariaDB max_statement_time; MySQL max_execution_time.
_TIMEOUT_CODES = {"57014", "1969", "3024"}


@dataclass(frozen=True)
class DatabaseResult:
    columns: list[dict[str, str]]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float


class ConnectedDatabase:
    """One connection's database, for the span of one tool call (``with ConnectedDatabase(...) as db``)."""

    def __init__(self, connection: ResolvedConnection, *, timeout_s: float, loc: tuple[str, ...]) -> None:
        self.connection = connection
        self.provider = connection.provider
        self.timeout_s = timeout_s
        self.loc = loc
        self.engine = sql_engine(connection).execution_options(isolation_level="AUTOCOMMIT")
        self._secrets = [str(v) for v in connection.secrets.values() if v]

    def __enter__(self) -> ConnectedDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.engine.dispose()

    def guard(self, sql: str) -> DatabaseStatement:
        return guard_database_sql(sql, self.provider, loc=self.loc)

    def query(self, statement: DatabaseStatement, *, row_limit: int) -> DatabaseResult:
        """The statement's first ``row_limit`` rows (``truncated`` when there were more)."""
        started = time.perf_counter()
        with self._read_only() as cursor:
            cursor.execute(statement.limited_sql(row_limit + 1))
            names = [str(column[0]) for column in cursor.description or ()]
            fetched = list(cursor.fetchall())
        types = [_value_type(row[i] for row in fetched) for i in range(len(names))]
        rows = [[to_json_value(value) for value in row] for row in fetched[:row_limit]]
        return DatabaseResult(
            columns=[{"name": name, "type": kind} for name, kind in zip(names, types, strict=True)],
            rows=rows,
            truncated=len(fetched) > row_limit,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def tables(self, wanted: Sequence[str] | None, *, max_tables: int) -> list[tuple[str | None, str]]:
        """``(schema, table)`` of the tables named (``schema.table`` or ``table``), else the default schema's."""
        inspector = sa.inspect(self.engine)
        if not wanted:
            return [(None, name) for name in sorted(inspector.get_table_names())[:max_tables]]
        found: list[tuple[str | None, str]] = []
        for index, name in enumerate(wanted):
            schema, _, table = name.rpartition(".")
            if table not in inspector.get_table_names(schema=schema or None):
                raise QueryFailed.at([*self.loc[:-1], "tables", index], f"unknown table {name!r} in the database")
            found.append((schema or None, table))
        return found

    def columns(self, schema: str | None, table: str) -> list[dict[str, str]]:
        inspector = sa.inspect(self.engine)
        return [{"name": str(c["name"]), "type": str(c["type"])} for c in inspector.get_columns(table, schema=schema)]

    def table_sql(self, schema: str | None, table: str) -> str:
        """The table's name, quoted for this database."""
        return exp.to_table(table if schema is None else f"{schema}.{table}", dialect=self._dialect).sql(
            dialect=self._dialect, identify=True
        )

    def column_sql(self, column: str) -> str:
        return exp.to_identifier(column, quoted=True).sql(dialect=self._dialect)

    @property
    def _dialect(self) -> str:
        return "postgres" if self.provider == "postgres" else "mysql"

    @contextmanager
    def _read_only(self) -> Iterator[Any]:
        """A DBAPI cursor inside a READ ONLY transaction with the statement timeout, rolled back whatever happens.

        The driver's own cursor, given no parameters, so a ``%`` in the SQL is just a character."""
        timeout_ms = max(1, int(self.timeout_s * 1000))
        try:
            with self.engine.connect() as conn:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    if self.provider == "postgres":
                        cursor.execute("BEGIN READ ONLY")
                        cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
                    else:
                        cursor.execute("SELECT VERSION()")
                        (version,) = cursor.fetchone() or ("",)
                        if "mariadb" in str(version).lower():
                            cursor.execute(f"SET SESSION max_statement_time = {timeout_ms / 1000:.3f}")
                        else:
                            cursor.execute(f"SET SESSION max_execution_time = {timeout_ms}")
                        cursor.execute("START TRANSACTION READ ONLY")
                    try:
                        yield cursor
                    finally:
                        cursor.execute("ROLLBACK")
                finally:
                    cursor.close()
        except (sa.exc.DBAPIError, psycopg.Error, pymysql.err.Error) as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> VaiError:
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        args = orig.args if orig is not None else ()
        codes = {str(getattr(orig, "sqlstate", None)), str(args[0]) if args else ""}
        if codes & _TIMEOUT_CODES:
            return QueryTimedOut.at(list(self.loc), f"the query ran longer than {self.timeout_s:g} s and was stopped")
        # PyMySQL's errors are (code, message); psycopg's message is the text itself.
        text = str(args[1]) if len(args) == 2 and isinstance(args[0], int) else str(orig or type(exc).__name__)
        message = text.strip().splitlines()[0]
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return QueryFailed.at(list(self.loc), message)


_TYPE_NAMES = {
    bool: "BOOLEAN",
    int: "BIGINT",
    float: "DOUBLE",
    Decimal: "DECIMAL",
    str: "VARCHAR",
    bytes: "BLOB",
    datetime: "TIMESTAMP",
    date: "DATE",
    time_of_day: "TIME",
    timedelta: "INTERVAL",
}


def _value_type(values: Iterator[Any]) -> str:
    """A column's type as the lake names types, from its first non-null value (drivers' type codes differ)."""
    for value in values:
        if value is not None:
            return _TYPE_NAMES.get(type(value), type(value).__name__.upper())
    return "NULL"
