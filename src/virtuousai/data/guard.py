"""The SQL guard: every SQL text a person or a model wrote passes here before DuckDB sees it.

It parses with sqlglot (DuckDB dialect) and accepts exactly one read-only query (``SELECT``, ``WITH … SELECT``, set
operations), then checks the whole tree:

- no node anywhere that writes, changes the schema or the session, or reaches outside (INSERT/UPDATE/DELETE/MERGE,
  CREATE/DROP/ALTER, COPY, ATTACH/DETACH, INSTALL/LOAD, SET/PRAGMA, CALL/EXPORT/IMPORT, transactions, SELECT INTO…);
- no function that reads files or remote systems or reveals the session (read_csv, read_parquet, glob, the
  postgres/sqlite/mysql scanners, query(), current_setting(), duckdb_*() …) — a deny-list, kept as a second line;
- the allow-list, which is the real wall: every table reference is either a CTE defined in the query or a
  three-part lake name ``<layer>.<dataset>.<table>``; table functions are limited to ``range``,
  ``generate_series`` and ``unnest``. The caller then checks each lake name exists in the organization's lake.

What runs is the SQL regenerated from the checked tree (never the original text), so DuckDB executes exactly what
was checked, however the text was written.

The guard is a pure function of the text, so its verdicts on recent texts are remembered (an LRU of
``GUARD_MEMO_SIZE`` texts up to ``GUARD_MEMO_MAX_LENGTH`` characters): dashboards, agents and schedules send the
same queries again and again, and parsing and checking a short group-by costs 0.5-1.5 ms, more than DuckDB needs to
run a small one. Only acceptances are remembered; a refused text is checked again each time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from virtuousai.data.errors import SqlRejected, UnknownTable
from virtuousai.data.lake import LAYERS, NAME_PATTERN, TableRef
from virtuousai.errors import FieldError

__all__ = ["DatabaseStatement", "GuardedQuery", "SqlRejected", "UnknownTable", "guard_database_sql", "guard_sql"]

# sqlglot warns on every statement it falls back to parsing as a Command; the guard refuses those anyway.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

MAX_SQL_LENGTH = 100_000
DIALECT = "duckdb"
GUARD_MEMO_SIZE = 256
GUARD_MEMO_MAX_LENGTH = 8_192  # longer texts are checked every time: the memo stays a few MB at most

# Statement and clause nodes that never belong in a read-only query, at any depth.
_FORBIDDEN_NODE_NAMES = (
    "Insert",
    "Update",
    "Delete",
    "Merge",
    "Create",
    "Drop",
    "Alter",
    "TruncateTable",
    "Copy",
    "Command",  # whatever sqlglot cannot parse as SQL it knows: LOAD, CALL, EXPORT, IMPORT, VACUUM, PREPARE …
    "Set",
    "Pragma",
    "Attach",
    "Detach",
    "Install",
    "Use",
    "Transaction",
    "Commit",
    "Rollback",
    "Into",
    "Describe",
    "Summarize",
    "Show",
    "LoadData",
    "Analyze",
    "Export",
    "Refresh",
    "Cache",
    "Uncache",
    "Grant",
    "Revoke",
    "Comment",
    "Kill",
    "Declare",
    "Execute",
)
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, name) for name in _FORBIDDEN_NODE_NAMES if hasattr(exp, name)
)

# Functions that read files or remote systems, run SQL from a string, or reveal the session or the machine.
FORBIDDEN_FUNCTIONS: frozenset[str] = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "parquet_scan",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "json_scan",
        "read_text",
        "read_blob",
        "read_xlsx",
        "sniff_csv",
        "glob",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "parquet_bloom_probe",
        "iceberg_scan",
        "iceberg_metadata",
        "iceberg_snapshots",
        "delta_scan",
        "postgres_scan",
        "postgres_scan_pushdown",
        "postgres_query",
        "postgres_execute",
        "postgres_attach",
        "sqlite_scan",
        "sqlite_attach",
        "sqlite_query",
        "mysql_scan",
        "mysql_query",
        "mysql_execute",
        "query",
        "query_table",
        "st_read",
        "st_read_meta",
        "current_setting",
        "getenv",
        "which_secret",
        "load_aws_credentials",
        "httpfs",
        "http_get",
        "http_post",
        "read_file",
        "write_file",
        "checkpoint",
        "force_checkpoint",
        "enable_logging",
        "truncate_duckdb_logs",
        "export_database",
        "import_database",
    }
)
FORBIDDEN_FUNCTION_PREFIXES: tuple[str, ...] = (
    "read_",
    "duckdb_",
    "pragma_",
    "postgres_",
    "mysql_",
    "sqlite_",
    "iceberg_",
    "delta_",
    "parquet_",
    "http",
    "st_read",
)
# The only table functions a query may call in FROM.
ALLOWED_TABLE_FUNCTIONS: frozenset[str] = frozenset({"range", "generate_series", "unnest"})
# CTE names may not shadow DuckDB's system views.
_RESERVED_CTE_PREFIXES = ("duckdb_", "pragma_", "pg_", "sqlite_", "information_schema")


@dataclass(frozen=True)
class GuardedQuery:
    """A query the guard accepted: what DuckDB runs and the lake tables it reads. Immutable (the guard's memo shares
    one between requests), so it keeps the checked tree's rendering, not the tree."""

    sql: str  # the checked tree, regenerated: what DuckDB runs (never the original text)
    tables: frozenset[TableRef]
    # Where errors about this SQL point: the API body, an action input, a flashboard tile (["body", "tiles", 2, "sql"]).
    loc: tuple[str | int, ...] = ("body", "sql")

    def limited_sql(self, row_limit: int) -> str:
        """The query wrapped so DuckDB stops after ``row_limit`` rows (its own ORDER BY is kept).

        The same text sqlglot generates for ``SELECT * FROM (<tree>) AS vai_result LIMIT n`` (a subquery renders
        as its query in parentheses), built without copying the tree, which cost more than the guard itself.
        ``sql`` is regenerated from the checked tree, with comments re-emitted as ``/* */`` blocks whose ``*/`` is
        escaped, so nothing in it can close the parenthesis. tests/data/test_guard.py checks both renderings match.
        """
        return _limited(self.sql, row_limit)


def _limited(sql: str, row_limit: int) -> str:
    """A checked query wrapped so the database stops after ``row_limit`` rows (its own ORDER BY is kept)."""
    return f"SELECT * FROM ({sql}) AS vai_result LIMIT {int(row_limit)}"


def _reject(message: str, loc: tuple[str | int, ...]) -> SqlRejected:
    return SqlRejected(message, errors=[FieldError(list(loc), message, "sql_rejected")])


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return type(node).__name__.lower()


def _is_forbidden_function(name: str) -> bool:
    return name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_FUNCTION_PREFIXES)


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Column):  # a bare word such as CHECKPOINT parses as a column
        return node.sql(dialect=DIALECT).upper()
    return type(node).__name__.upper()


def guard_sql(sql: str, *, loc: tuple[str | int, ...] = ("body", "sql")) -> GuardedQuery:
    """Accept one read-only query over lake tables, or raise ``SqlRejected`` naming what was refused."""
    if len(sql) <= GUARD_MEMO_MAX_LENGTH:
        return _remembered_guard(sql, loc)
    return _guard(sql, loc)


@lru_cache(maxsize=GUARD_MEMO_SIZE)
def _remembered_guard(sql: str, loc: tuple[str | int, ...]) -> GuardedQuery:
    return _guard(sql, loc)  # an exception is not cached: a refused text is checked again next time


def _one_query(sql: str, dialect: str, loc: tuple[str | int, ...]) -> exp.Expr:
    """The one read-only query ``sql`` holds (``SELECT``, ``WITH … SELECT``, a set operation), parsed."""
    if len(sql) > MAX_SQL_LENGTH:
        raise _reject(f"the SQL is longer than {MAX_SQL_LENGTH} characters", loc)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise _reject(f"the SQL could not be parsed: {str(exc).splitlines()[0]}", loc) from None
    if len(statements) != 1:
        raise _reject(f"exactly one statement is allowed, found {len(statements)}", loc)
    (root,) = statements
    if isinstance(root, exp.Subquery) and isinstance(root.this, exp.Query):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise _reject(
            f"only a read-only query (SELECT, WITH … SELECT, UNION …) is allowed, not {_statement_name(root)}", loc
        )
    return root


def _guard(sql: str, loc: tuple[str | int, ...]) -> GuardedQuery:
    root = _one_query(sql, DIALECT, loc)
    cte_names = _cte_names(root, loc)
    tables: set[TableRef] = set()
    for node in root.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise _reject(f"{_statement_name(node)} is not allowed in a read-only query", loc)
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if _is_forbidden_function(name):
                raise _reject(f"function {name}() is not allowed: it reads files, remote systems or settings", loc)
        if isinstance(node, exp.Table):
            ref = _table_reference(node, cte_names, loc)
            if ref is not None:
                tables.add(ref)
    return GuardedQuery(sql=root.sql(dialect=DIALECT), tables=frozenset(tables), loc=loc)


def _cte_names(root: exp.Expr, loc: tuple[str | int, ...]) -> frozenset[str]:
    names = set()
    for cte in root.find_all(exp.CTE):
        name = cte.alias_or_name.lower()
        if name.startswith(_RESERVED_CTE_PREFIXES):
            raise _reject(f"CTE name {name!r} is reserved", loc)
        names.add(name)
    return frozenset(names)


def _table_reference(node: exp.Table, cte_names: frozenset[str], loc: tuple[str | int, ...]) -> TableRef | None:
    """The lake table a FROM/JOIN item names (None for CTEs and allowed table functions), or a rejection."""
    target = node.this
    if isinstance(target, exp.Func):
        name = _function_name(target)
        if name not in ALLOWED_TABLE_FUNCTIONS:
            raise _reject(f"table function {name}() is not allowed; query lake tables by name", loc)
        return None
    if not isinstance(target, exp.Identifier):
        raise _reject(f"{node.sql(dialect=DIALECT)!r} is not a table name", loc)
    parts = [part.name for part in node.parts]
    if len(parts) == 1 and parts[0].lower() in cte_names:
        return None
    qualified = ".".join(parts)
    if len(parts) != 3:
        raise UnknownTable.at(
            list(loc),
            f"unknown table {qualified!r}: name lake tables as <layer>.<dataset>.<table>, e.g. bronze.shop.orders",
            type="unknown_table",
        )
    layer, dataset, table = (p.lower() for p in parts)
    if layer not in LAYERS or not NAME_PATTERN.fullmatch(dataset) or not NAME_PATTERN.fullmatch(table):
        raise UnknownTable.at(
            list(loc),
            f"unknown table {qualified!r}: the layer must be one of {', '.join(LAYERS)}",
            type="unknown_table",
        )
    return TableRef(layer, dataset, table)


# --- connected databases ---------------------------------------------------------------------------------------
#
# ``generate_query`` on a connected PostgreSQL or MySQL/MariaDB database: the same tree check in that database's
# dialect, with its own deny-list. Table names are the database's (its grants decide what the connection's user
# may read); the walls behind the guard are the database's: a READ ONLY transaction and a statement timeout
# (``data/databases.py``).

DATABASE_DIALECTS: dict[str, str] = {"postgres": "postgres", "mysql": "mysql"}  # provider -> sqlglot dialect

# Functions that read the server's files, sleep or lock, signal other sessions, or change settings or sequences.
DATABASE_FORBIDDEN_FUNCTIONS: frozenset[str] = frozenset(
    {
        # PostgreSQL
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_get",
        "lo_put",
        "lo_from_bytea",
        "set_config",
        "current_setting",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_notify",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "table_to_xml",
        "database_to_xml",
        "schema_to_xml",
        # MySQL / MariaDB
        "load_file",
        "sleep",
        "benchmark",
        "get_lock",
        "release_lock",
        "release_all_locks",
        "master_pos_wait",
        "source_pos_wait",
        "sys_exec",
        "sys_eval",
    }
)
DATABASE_FORBIDDEN_FUNCTION_PREFIXES: tuple[str, ...] = ("pg_sleep", "pg_advisory", "pg_try_advisory", "dblink", "lo_")


@dataclass(frozen=True)
class DatabaseStatement:
    """A query the guard accepted for a connected database: the checked tree in its dialect."""

    sql: str
    dialect: str
    loc: tuple[str, ...] = ("inputs", "sql")

    def limited_sql(self, row_limit: int) -> str:
        return _limited(self.sql, row_limit)


def guard_database_sql(sql: str, provider: str, *, loc: tuple[str, ...] = ("inputs", "sql")) -> DatabaseStatement:
    """Accept one read-only query in the dialect of a ``postgres`` or ``mysql`` connection, or raise
    ``SqlRejected`` naming what was refused."""
    dialect = DATABASE_DIALECTS.get(provider)
    if dialect is None:
        raise _reject(f"generate_query runs on postgres or mysql connections, not {provider!r}", loc)
    root = _one_query(sql, dialect, loc)
    for node in root.walk():
        if isinstance(node, (*FORBIDDEN_NODES, exp.Lock)):
            raise _reject(f"{_statement_name(node)} is not allowed in a read-only query", loc)
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in DATABASE_FORBIDDEN_FUNCTIONS or name.startswith(DATABASE_FORBIDDEN_FUNCTION_PREFIXES):
                raise _reject(f"function {name}() is not allowed: it reads files, waits, locks or changes state", loc)
    return DatabaseStatement(sql=root.sql(dialect=dialect), dialect=dialect, loc=loc)
