"""dlt sources for ``dlt_extract``, built from the action's inputs and a decrypted connection.

Credentials go to dlt only as live objects (a SQLAlchemy engine, an auth object), never as connection strings or
config values, so dlt has nothing to write into its state, schema or trace files. Everything a source is told
(tables, cursor columns, folders) is checked here first, so a typo fails with an error naming it before dlt starts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from virtuousai.data.extract import ExtractFailed, redact
from virtuousai.data.lake import check_name
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import ResolvedConnection

SQL_PROVIDERS = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql", "sqlite": "sqlite"}
HTTP_PROVIDERS = {"rest_api", "http_api"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SqlDatabaseSource(_Strict):
    type: Literal["sql_database"]
    tables: list[str] = Field(min_length=1, description="Source tables; each becomes a bronze table of the same name.")
    db_schema: str | None = Field(default=None, description="Database schema (default: the connection's default).")
    incremental: dict[str, str] = Field(
        default_factory=dict, description="{table: cursor_column}: load only rows past the last cursor value seen."
    )
    backend: Literal["pyarrow", "sqlalchemy"] = "pyarrow"
    chunk_size: int = Field(default=50_000, ge=1, le=1_000_000)


class RestApiResource(_Strict):
    name: str = Field(description="Resource name; becomes the bronze table name.")
    path: str | None = Field(default=None, description="Endpoint path relative to the base URL (default: name).")
    params: dict[str, Any] = Field(default_factory=dict)
    data_selector: str | None = Field(default=None, description="JSONPath to the records in each response.")
    paginator: str | dict[str, Any] | None = None
    primary_key: str | list[str] | None = None


class RestApiIncremental(_Strict):
    cursor_path: str = Field(description="Field of each record holding the cursor (e.g. updated_at).")
    start_param: str | None = Field(default=None, description="Query parameter that receives the last value.")
    initial_value: Any = None


class RestApiSource(_Strict):
    type: Literal["rest_api"]
    resources: list[RestApiResource] = Field(min_length=1)
    paginator: str | dict[str, Any] | None = Field(default=None, description="Default paginator (dlt's config).")
    incremental: dict[str, RestApiIncremental] = Field(default_factory=dict, description="{resource: cursor}")


class FilesystemSource(_Strict):
    type: Literal["filesystem"]
    path_glob: str = Field(description="Absolute glob, e.g. /srv/exports/orders/*.csv, under an allowed folder.")
    format: Literal["csv", "jsonl", "parquet"]
    table: str = Field(description="Bronze table name for the rows of all matched files.")


ExtractSource = Annotated[SqlDatabaseSource | RestApiSource | FilesystemSource, Field(discriminator="type")]


def _source_loc(*parts: str | int) -> list[str | int]:
    return ["inputs", "source", *parts]


# --- SQL databases --------------------------------------------------------------------------------------------


def sql_engine(connection: ResolvedConnection) -> sa.Engine:
    """A SQLAlchemy engine for a postgres, mysql or sqlite connection (the password lives only in this object)."""
    driver = SQL_PROVIDERS.get(connection.provider)
    if driver is None:
        raise ValidationFailed.at(
            ["inputs", "connection"],
            f"a sql_database source needs a postgres, mysql or sqlite connection, not {connection.provider!r}",
        )
    config = connection.config
    if connection.provider == "sqlite":
        path = Path(str(config["path"]))
        if not path.is_file():
            raise ValidationFailed.at(["inputs", "connection"], f"SQLite database file {str(path)!r} does not exist")
        return sa.create_engine(sa.URL.create("sqlite", database=str(path)))
    url = sa.URL.create(
        driver,
        username=str(config["username"]),
        password=connection.secrets.get("password"),
        host=str(config["host"]),
        port=int(config["port"]),
        database=str(config["database"]),
        query={str(k): str(v) for k, v in dict(config.get("options") or {}).items()},
    )
    return sa.create_engine(url, pool_pre_ping=True)


def check_sql_source(
    engine: sa.Engine, source: SqlDatabaseSource, *, secrets: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Every table and cursor column exists; returns each table's column names.

    This is the first time the source database is reached: a refused login or an unreachable server fails here as
    ``ExtractFailed`` naming the driver's reason (``secrets`` redacted), before dlt starts.
    """
    try:
        inspector = sa.inspect(engine)
        existing = set(inspector.get_table_names(schema=source.db_schema))
        columns: dict[str, list[str]] = {}
        for index, table in enumerate(source.tables):
            check_name(table, _source_loc("tables", index), "table")
            if table not in existing:
                raise ValidationFailed.at(
                    _source_loc("tables", index), f"unknown table {table!r} in the source database"
                )
            columns[table] = [str(c["name"]) for c in inspector.get_columns(table, schema=source.db_schema)]
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise ExtractFailed(redact(f"could not read the source database: {reason}", secrets)) from None
    for table, cursor in source.incremental.items():
        if table not in columns:
            raise ValidationFailed.at(
                _source_loc("incremental", table), f"incremental names table {table!r}, which is not in tables"
            )
        if cursor not in columns[table]:
            raise ValidationFailed.at(
                _source_loc("incremental", table),
                f"unknown cursor column {cursor!r} in table {table!r}; columns: {', '.join(columns[table])}",
            )
    return columns


def float_as_double(sql_type: Any) -> Any:
    """dlt's ``type_adapter_callback``: floating-point columns (``REAL``, ``FLOAT``, ``DOUBLE``) are doubles.

    dlt recognises a double as a ``Numeric`` that returns floats, and SQLAlchemy 2.1 no longer derives ``Float`` from
    ``Numeric``: without this every such column (the demo shop's prices among them) logs "unknown data type REAL"
    on every run and has its type guessed from the data."""
    if isinstance(sql_type, sa.Float) and not isinstance(sql_type, sa.Numeric):
        return sa.Numeric(asdecimal=False)
    return sql_type


def sql_resources(engine: sa.Engine, source: SqlDatabaseSource) -> list[Any]:
    import dlt
    from dlt.sources.sql_database import sql_table

    resources = []
    for table in source.tables:
        cursor = source.incremental.get(table)
        resources.append(
            sql_table(
                credentials=engine,
                table=table,
                schema=source.db_schema,
                backend=source.backend,
                chunk_size=source.chunk_size,
                incremental=dlt.sources.incremental(cursor) if cursor else None,
                reflection_level="full",
                type_adapter_callback=float_as_double,
            )
        )
    return resources


# --- REST APIs ------------------------------------------------------------------------------------------------


def _rest_auth(connection: ResolvedConnection) -> Any:
    """dlt auth objects from the connection's secrets (objects, so no secret is a config value dlt could record)."""
    from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth, HttpBasicAuth

    config, secrets = connection.config, connection.secrets
    auth_type = str(config.get("auth_type") or "none")
    if auth_type == "bearer":
        return BearerTokenAuth(token=secrets["token"])
    if auth_type == "api_key":
        return APIKeyAuth(
            name=str(config.get("api_key_name") or "Authorization"),
            api_key=secrets["api_key"],
            location="query" if config.get("api_key_location") == "query" else "header",
        )
    if auth_type == "http_basic":
        return HttpBasicAuth(username=secrets["username"], password=secrets["password"])
    if auth_type == "header":  # an http_api connection with a custom header
        return APIKeyAuth(name=str(config["header_name"]), api_key=secrets["token"], location="header")
    if auth_type == "query":
        return APIKeyAuth(name=str(config["query_param"]), api_key=secrets["token"], location="query")
    if auth_type == "basic":
        return HttpBasicAuth(username=secrets["username"], password=secrets["password"])
    return None


def rest_api_config(connection: ResolvedConnection, source: RestApiSource) -> dict[str, Any]:
    if connection.provider not in HTTP_PROVIDERS:
        raise ValidationFailed.at(
            ["inputs", "connection"],
            f"a rest_api source needs a rest_api or http_api connection, not {connection.provider!r}",
        )
    client: dict[str, Any] = {"base_url": str(connection.config["base_url"]).rstrip("/") + "/"}
    headers = dict(connection.config.get("headers") or {})
    if headers:
        client["headers"] = headers
    paginator = source.paginator or connection.config.get("paginator")
    if paginator:
        client["paginator"] = paginator
    auth = _rest_auth(connection)
    if auth is not None:
        client["auth"] = auth
    names = {r.name for r in source.resources}
    resources: list[dict[str, Any]] = []
    for index, resource in enumerate(source.resources):
        check_name(resource.name, _source_loc("resources", index, "name"), "resource")
        endpoint: dict[str, Any] = {"path": resource.path or resource.name, "params": dict(resource.params)}
        if resource.data_selector:
            endpoint["data_selector"] = resource.data_selector
        if resource.paginator:
            endpoint["paginator"] = resource.paginator
        cursor = source.incremental.get(resource.name)
        if cursor is not None:
            incremental: dict[str, Any] = {"cursor_path": cursor.cursor_path, "initial_value": cursor.initial_value}
            if cursor.start_param:
                incremental["start_param"] = cursor.start_param
            endpoint["incremental"] = incremental
        entry: dict[str, Any] = {"name": resource.name, "endpoint": endpoint}
        if resource.primary_key:
            entry["primary_key"] = resource.primary_key
        resources.append(entry)
    for name in source.incremental:
        if name not in names:
            raise ValidationFailed.at(_source_loc("incremental", name), f"incremental names unknown resource {name!r}")
    return {"client": client, "resources": resources}


def rest_api_resources(config: Mapping[str, Any]) -> list[Any]:
    from dlt.sources.rest_api import rest_api_resources as build

    return list(build(config))  # type: ignore[arg-type]


# --- files ----------------------------------------------------------------------------------------------------


def split_glob(path_glob: str) -> tuple[Path, str]:
    """``/srv/x/*/a.csv`` → (``/srv/x``, ``*/a.csv``): the folder before the first wildcard, and the pattern."""
    parts = Path(path_glob).parts
    for index, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return Path(*parts[:index]), "/".join(parts[index:])
    return Path(*parts[:-1]), parts[-1]


def check_filesystem_source(source: FilesystemSource, allowed_roots: Sequence[Path]) -> tuple[Path, str]:
    """The folder and pattern to read, after checking the folder is inside an allowed root (symlinks resolved)."""
    check_name(source.table, _source_loc("table"), "table")
    if not Path(source.path_glob).is_absolute() or ".." in Path(source.path_glob).parts:
        raise ValidationFailed.at(_source_loc("path_glob"), "path_glob must be an absolute path without '..'")
    folder, pattern = split_glob(source.path_glob)
    resolved = folder.resolve()
    roots = [root.resolve() for root in allowed_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ValidationFailed.at(
            _source_loc("path_glob"), f"{str(folder)!r} is not inside a folder this organization may read"
        )
    if not resolved.is_dir():
        raise ValidationFailed.at(_source_loc("path_glob"), f"folder {str(folder)!r} does not exist")
    matched = [p for p in resolved.rglob("*") if p.is_file() and fnmatch.fnmatch(str(p.relative_to(resolved)), pattern)]
    for path in matched:
        if not any(path.resolve().is_relative_to(root) for root in roots):
            raise ValidationFailed.at(_source_loc("path_glob"), f"{path.name!r} links outside the allowed folders")
    if not matched:
        raise ValidationFailed.at(_source_loc("path_glob"), f"no file matches {source.path_glob!r}")
    return resolved, pattern


def filesystem_resource(folder: Path, pattern: str, source: FilesystemSource) -> Any:
    from dlt.sources.filesystem import filesystem, read_csv_duckdb, read_jsonl, read_parquet

    files = filesystem(bucket_url=folder.as_uri(), file_glob=pattern)
    # CSV through DuckDB's reader (typed columns, Arrow batches) rather than dlt's pandas-based read_csv.
    reader: Any = {
        "csv": lambda: read_csv_duckdb(use_pyarrow=True),
        "jsonl": read_jsonl,
        "parquet": read_parquet,
    }[source.format]
    return (files | reader()).with_name(source.table)
