"""The data action kinds: ``dlt_extract`` (a source → bronze), ``sql_transform`` (guarded SQL → silver/gold) and
``load`` (a lake table → a destination database).

Each kind resolves its connection inside the running action (the only place secrets are decrypted), then does the
blocking work in a thread, checking ``ctx.cancel`` at safe points (every chunk).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.config import get_settings
from virtuousai.data import sources
from virtuousai.data.extract import ExtractJob, ExtractResult, run_extract
from virtuousai.data.lake import check_name
from virtuousai.data.transform import LoadJob, TransformJob, run_load, run_transform
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.runtime.kinds import RetryPolicy, action_kind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnOut(BaseModel):
    name: str
    type: str


class SchemaChangeOut(BaseModel):
    table: str
    added: list[ColumnOut] = Field(default_factory=list)
    removed: list[ColumnOut] = Field(default_factory=list)
    retyped: list[dict[str, str]] = Field(default_factory=list, description="[{column, old, new}]")


class TableOut(BaseModel):
    table: str = Field(description="Three-part name, e.g. bronze.shop.orders.")
    rows: int = Field(description="Rows this run wrote.")
    total_rows: int | None = Field(description="Rows in the published version (None if nothing was published).")
    version: int | None
    files_written: list[str]


def _progress(ctx: ActionContext, loop: asyncio.AbstractEventLoop, event: str) -> Any:
    def report(table: str, rows: int) -> None:
        asyncio.run_coroutine_threadsafe(ctx.emit(event, {"table": table, "rows": rows}), loop).result(timeout=30)

    return report


# --- dlt_extract ----------------------------------------------------------------------------------------------


class DltExtractInput(_Strict):
    connection: str | None = Field(
        default=None, description="Connection id, slug:<slug> or provider:<provider> (not needed for filesystem)."
    )
    dataset: str = Field(description="Bronze dataset: tables land in bronze.<dataset>.<table>.")
    source: sources.ExtractSource
    write_disposition: Literal["append", "replace", "merge"] = "append"
    primary_key: dict[str, list[str]] = Field(
        default_factory=dict, description="{table: [columns]} for merge (default: the source's primary key)."
    )
    schema_contract: Literal["evolve", "freeze"] = Field(
        default="evolve", description="freeze: a new or changed column fails the run and nothing is published."
    )


class DltExtractOutput(BaseModel):
    dataset: str
    load_id: str | None
    tables: list[TableOut]
    rows: dict[str, int] = Field(description="{table: rows written by this run}")
    files_written: int
    schema_changes: list[SchemaChangeOut]


def _filesystem_roots(ctx: ActionContext) -> list[Path]:
    configured = ctx.options.get("filesystem_source_roots")
    roots = [Path(p) for p in configured] if configured is not None else list(get_settings().filesystem_source_roots)
    return [ctx.data_dir / "files" / ctx.tenant_id, *roots]


async def _build_job(ctx: ActionContext, inputs: DltExtractInput) -> ExtractJob:
    check_name(inputs.dataset, ["inputs", "dataset"], "dataset")
    source = inputs.source
    connection: ResolvedConnection | None = None
    if not isinstance(source, sources.FilesystemSource):
        if inputs.connection is None:
            raise ValidationFailed.at(["inputs", "connection"], f"a {source.type} source needs a connection")
        connection = await ctx.connection(inputs.connection)
    job = ExtractJob(
        tenant_id=ctx.tenant_id,
        run_id=ctx.run_id,
        data_dir=ctx.data_dir,
        dataset=inputs.dataset,
        pipeline_key=connection.id if connection else "files",
        resources=[],
        expected_tables=[],
        write_disposition=inputs.write_disposition,
        primary_key=inputs.primary_key,
        schema_contract=inputs.schema_contract,
        cancel=ctx.cancel,
        secrets=[str(v) for v in connection.secrets.values() if v] if connection else [],
    )
    if isinstance(source, sources.SqlDatabaseSource):
        assert connection is not None
        engine = sources.sql_engine(connection)
        await asyncio.to_thread(sources.check_sql_source, engine, source, secrets=job.secrets)
        job.resources = sources.sql_resources(engine, source)
        job.expected_tables = list(source.tables)
    elif isinstance(source, sources.RestApiSource):
        assert connection is not None
        await _check_http_destination(ctx, str(connection.config.get("base_url", "")))
        job.resources = sources.rest_api_resources(sources.rest_api_config(connection, source))
        job.expected_tables = [r.name for r in source.resources]
    else:
        folder, pattern = await asyncio.to_thread(sources.check_filesystem_source, source, _filesystem_roots(ctx))
        job.resources = [sources.filesystem_resource(folder, pattern, source)]
        job.expected_tables = [source.table]
    return job


async def _check_http_destination(ctx: ActionContext, base_url: str) -> None:
    """The same SSRF policy as every outbound request: no private, link-local or metadata addresses."""
    from virtuousai.net.ssrf import DestinationPolicy, SystemResolver, parse_target_url, resolve_destination

    policy = DestinationPolicy(allow_loopback=bool(ctx.options.get("http_allow_loopback", False)))
    await resolve_destination(parse_target_url(base_url), policy, SystemResolver())


def _extract_output(dataset: str, result: ExtractResult) -> DltExtractOutput:
    tables, changes = [], []
    for extracted in result.tables:
        published = extracted.published
        tables.append(
            TableOut(
                table=f"bronze.{dataset}.{extracted.table}",
                rows=extracted.rows,
                total_rows=published.manifest.rows if published else None,
                version=published.manifest.version if published else None,
                files_written=list(published.files_written) if published else [],
            )
        )
        if published and not published.schema_change.is_empty:
            change = published.schema_change
            changes.append(
                SchemaChangeOut(
                    table=extracted.table,
                    added=[ColumnOut(name=c.name, type=c.type) for c in change.added],
                    removed=[ColumnOut(name=c.name, type=c.type) for c in change.removed],
                    retyped=[{"column": n, "old": o, "new": t} for n, o, t in change.retyped],
                )
            )
    return DltExtractOutput(
        dataset=dataset,
        load_id=result.load_id,
        tables=tables,
        rows={t.table: t.rows for t in result.tables},
        files_written=sum(len(t.files_written) for t in tables),
        schema_changes=changes,
    )


@action_kind(
    "dlt_extract",
    risk="read",
    description="Extract tables from a database, REST API or files with dlt into the organization's bronze layer.",
    timeout_s=6 * 3600,
    retry=RetryPolicy(max_attempts=3, backoff_s=10),
)
async def dlt_extract(ctx: ActionContext, inputs: DltExtractInput) -> DltExtractOutput:
    job = await _build_job(ctx, inputs)
    job.on_progress = _progress(ctx, asyncio.get_running_loop(), "extract.progress")
    result = await asyncio.to_thread(run_extract, job)
    return _extract_output(inputs.dataset, result)


# --- sql_transform --------------------------------------------------------------------------------------------


class TransformTarget(_Strict):
    layer: Literal["silver", "gold"]
    dataset: str
    table: str


class SqlTransformInput(_Strict):
    sql: str = Field(min_length=1, description="One guarded read-only query over <layer>.<dataset>.<table> names.")
    target: TransformTarget
    mode: Literal["replace", "append"] = "replace"


class SqlTransformOutput(BaseModel):
    table: str
    rows: int
    total_rows: int
    version: int
    columns: list[ColumnOut]
    sources: list[str] = Field(description="The lake tables the SQL read.")
    schema_change: SchemaChangeOut | None


@action_kind(
    "sql_transform",
    risk="read",
    description="Run guarded DuckDB SQL over the lake and publish the result as a silver or gold table.",
    timeout_s=3600,
    retry=RetryPolicy(max_attempts=2, backoff_s=5),
)
async def sql_transform(ctx: ActionContext, inputs: SqlTransformInput) -> SqlTransformOutput:
    target = inputs.target
    check_name(target.dataset, ["inputs", "target", "dataset"], "dataset")
    check_name(target.table, ["inputs", "target", "table"], "table")
    settings = get_settings()
    job = TransformJob(
        tenant_id=ctx.tenant_id,
        run_id=ctx.run_id,
        data_dir=ctx.data_dir,
        sql=inputs.sql,
        layer=target.layer,
        dataset=target.dataset,
        table=target.table,
        mode=inputs.mode,
        max_rows=int(ctx.options.get("transform_row_cap", settings.transform_row_cap)),
        timeout_s=float(ctx.options.get("transform_timeout_s", settings.transform_timeout_s)),
        threads=settings.query_threads,
        memory_limit=str(ctx.options.get("transform_memory_limit", settings.transform_memory_limit)),
        cancel=ctx.cancel,
    )
    result = await asyncio.to_thread(run_transform, job)
    change = result.published.schema_change
    return SqlTransformOutput(
        table=str(result.published.manifest.ref),
        rows=result.rows,
        total_rows=result.published.manifest.rows,
        version=result.published.manifest.version,
        columns=[ColumnOut(name=c.name, type=c.type) for c in result.published.manifest.columns],
        sources=sorted(str(t) for t in result.sources),
        schema_change=None
        if change.is_empty or result.published.previous is None
        else SchemaChangeOut(
            table=change.table,
            added=[ColumnOut(name=c.name, type=c.type) for c in change.added],
            removed=[ColumnOut(name=c.name, type=c.type) for c in change.removed],
            retyped=[{"column": n, "old": o, "new": t} for n, o, t in change.retyped],
        ),
    )


# --- load -----------------------------------------------------------------------------------------------------


class LoadInput(_Strict):
    source: str = Field(description="The lake table to copy, e.g. gold.shop.daily_revenue.")
    connection: str = Field(description="Destination: a postgres, sqlite or duckdb connection.")
    dataset: str | None = Field(
        default=None, description="Destination schema (postgres/duckdb; default: the lake dataset). Ignored by SQLite."
    )
    table: str | None = Field(default=None, description="Destination table (default: the lake table's name).")
    write_disposition: Literal["replace", "append", "merge"] = "replace"
    primary_key: list[str] = Field(default_factory=list, description="For merge.")


class LoadOutput(BaseModel):
    destination: str
    table: str
    rows: int
    load_id: str | None


@action_kind(
    "load",
    risk="write",
    description="Copy a lake table into a destination database (postgres, sqlite, duckdb) with dlt.",
    timeout_s=6 * 3600,
    retry=RetryPolicy(max_attempts=3, backoff_s=10),
)
async def load(ctx: ActionContext, inputs: LoadInput) -> LoadOutput:
    parts = inputs.source.split(".")
    if len(parts) != 3:
        raise ValidationFailed.at(["inputs", "source"], "source must be <layer>.<dataset>.<table>")
    connection = await ctx.connection(inputs.connection)
    job = LoadJob(
        tenant_id=ctx.tenant_id,
        run_id=ctx.run_id,
        data_dir=ctx.data_dir,
        source=(parts[0], parts[1], parts[2]),
        connection=connection,
        dataset=inputs.dataset or parts[1],
        table=inputs.table or parts[2],
        write_disposition=inputs.write_disposition,
        primary_key=inputs.primary_key,
        cancel=ctx.cancel,
        on_progress=_progress(ctx, asyncio.get_running_loop(), "load.progress"),
    )
    result = await asyncio.to_thread(run_load, job)
    return LoadOutput(destination=connection.provider, table=result.table, rows=result.rows, load_id=result.load_id)
