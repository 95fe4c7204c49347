"""The data tools an agent is given, as action kinds: ``generate_query`` and ``explain_schema``.

Both run on the organization's lake (the guard, then the process-isolated engine: ``engine.py``) or on a connected
PostgreSQL or MySQL/MariaDB database (the guard in that dialect, then a READ ONLY transaction with a statement
timeout: ``databases.py``). Both record what they resolved — the SQL that ran, and where — so a replay repeats it.

``generate_query`` without ``sql`` asks the organization's ``fast`` model chain for one statement, given the tables
in scope (names, column types, a few sample values, row counts). That call's usage is in the output (and, when the
statement then fails, in the error) as ``model_usage``, which an agent run adds to its cost and budget. A statement
that is refused or fails is a non-retryable failure naming the problem (unknown column, forbidden function): given
back to the model, it corrects itself with a new tool call.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic_ai.messages import ModelRequest, SystemPromptPart, TextPart, UserPromptPart

from virtuousai.data.databases import ConnectedDatabase
from virtuousai.data.descriptions import TableDescriptions
from virtuousai.data.engine import LakeQueryEngine, shared_lake_engine
from virtuousai.data.guard import DATABASE_DIALECTS, guard_sql
from virtuousai.data.lake import Manifest, TableRef
from virtuousai.errors import NotFound, VaiError, ValidationFailed
from virtuousai.llm.chain import ModelChainError, total_cost
from virtuousai.llm.org_chain import model_chain_for_action
from virtuousai.llm.providers import LLMConfigError
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.runtime.kinds import RetryPolicy, action_kind
from virtuousai.timeutil import utcnow

SQL_MODEL = "fast"  # the alias generate_query writes SQL with
MAX_TABLES = 50  # tables described to the model (and by explain_schema without ``tables``)
SAMPLE_ROWS = 20  # rows read to pick sample values from
SAMPLES_PER_COLUMN = 3
SAMPLE_CHARS = 80  # a sample string is cut to this


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelUsage(BaseModel):
    """What writing the SQL cost (an agent run adds it to its own cost and budget)."""

    model: str
    cost: str | None = Field(description="USD; null when a price is unknown.")
    input_tokens: int
    output_tokens: int
    attempts: list[dict[str, Any]]


class ResultColumnOut(BaseModel):
    name: str
    type: str


# --- explain_schema ---------------------------------------------------------------------------------------------


class ColumnFacts(BaseModel):
    name: str
    type: str
    null_share: float | None = Field(default=None, description="Share of rows where it is null (0-1).")
    distinct: int | None = Field(default=None, description="Distinct values (approximate on the lake).")
    samples: list[JsonValue] = Field(default_factory=list, description="A few non-null values.")
    description: str | None = None


class TableFacts(BaseModel):
    name: str = Field(description="Lake: <layer>.<dataset>.<table>; a database: [schema.]table.")
    rows: int
    columns: list[ColumnFacts]
    published_at: str | None = Field(default=None, description="Lake: when the current version was published.")
    freshness_s: float | None = Field(default=None, description="Lake: seconds since then.")
    description: str | None = None


class ExplainSchemaInput(_Strict):
    tables: list[str] | None = Field(
        default=None,
        max_length=MAX_TABLES,
        description="Lake tables as <layer>.<dataset>.<table> (or a database's [schema.]table); default: all.",
    )
    connection: str | None = Field(
        default=None, description="A postgres or mysql connection (id or slug:<slug>); default: the lake."
    )


class ExplainSchemaOutput(BaseModel):
    source: str = Field(description="'lake' or 'connection:<id>'.")
    tables: list[TableFacts]
    truncated: bool = Field(description="More tables than the MAX_TABLES described.")


@action_kind(
    "explain_schema",
    risk="read",
    description="Tables, columns and types, row counts, null share, distinct counts, samples, freshness and the "
    "organization's descriptions, of the lake or a connected database.",
    timeout_s=120,
    retry=RetryPolicy(max_attempts=2, backoff_s=1.0),
)
async def explain_schema(ctx: ActionContext, inputs: ExplainSchemaInput) -> ExplainSchemaOutput:
    if inputs.connection is not None:
        connection = await _database_connection(ctx, inputs.connection)
        timeout_s = shared_lake_engine(ctx).limits.timeout_s
        tables, truncated = await asyncio.to_thread(_database_facts, connection, inputs.tables, timeout_s, stats=True)
        return ExplainSchemaOutput(source=f"connection:{connection.id}", tables=tables, truncated=truncated)
    tables, truncated = await _lake_facts(ctx, inputs.tables, stats=True)
    return ExplainSchemaOutput(source="lake", tables=tables, truncated=truncated)


# --- generate_query ---------------------------------------------------------------------------------------------


class GenerateQueryInput(_Strict):
    question: str = Field(min_length=1, max_length=4000, description="What the query should answer.")
    sql: str | None = Field(
        default=None, max_length=100_000, description="The statement to run; without it, the fast model writes one."
    )
    connection: str | None = Field(
        default=None, description="A postgres or mysql connection (id or slug:<slug>); default: the lake."
    )
    limit: int | None = Field(default=None, ge=1, description="Most rows (capped by VAI_QUERY_ROW_CAP).")


class GenerateQueryOutput(BaseModel):
    sql: str = Field(description="What ran: the guard's rendering of the statement.")
    columns: list[ResultColumnOut]
    rows: list[list[JsonValue]]
    truncated: bool
    row_count: int
    elapsed_ms: float
    source: str = Field(description="'lake' or 'connection:<id>'.")
    generated: bool = Field(description="The fast model wrote the SQL (no `sql` was given).")
    model_usage: ModelUsage | None = None


class QueryToolError(Exception):
    """A refused or failing statement: the model is told what is wrong, and another attempt would fail the same."""

    retryable = False

    def __init__(self, error: VaiError, *, sql: str | None, source: str, usage: ModelUsage | None) -> None:
        problems = "; ".join(str(e.get("msg")) for e in error.errors) or error.detail
        super().__init__(problems if sql is None else f"{problems} (SQL: {sql})")
        self.error_type = error.type_slug
        self.error_details: dict[str, Any] = {"sql": sql, "source": source}
        if usage is not None:
            self.error_details["model_usage"] = usage.model_dump()


@action_kind(
    "generate_query",
    risk="read",
    description="Runs one read-only SQL statement on the lake or a connected database; without `sql`, the "
    "organization's fast model writes it from the question and the tables' schema.",
    timeout_s=180,
    retry=RetryPolicy(max_attempts=2, backoff_s=1.0),
)
async def generate_query(ctx: ActionContext, inputs: GenerateQueryInput) -> GenerateQueryOutput:
    limits = shared_lake_engine(ctx).limits  # the process's query limits, the lake's and a database's alike
    row_limit = min(inputs.limit or limits.row_cap, limits.row_cap)
    connection = None if inputs.connection is None else await _database_connection(ctx, inputs.connection)
    source = "lake" if connection is None else f"connection:{connection.id}"
    usage: ModelUsage | None = None
    sql = inputs.sql
    if sql is None:
        if connection is None:
            tables, _ = await _lake_facts(ctx, None, stats=False)
            dialect = "duckdb"
        else:
            tables, _ = await asyncio.to_thread(_database_facts, connection, None, limits.timeout_s, stats=False)
            dialect = DATABASE_DIALECTS[connection.provider]
        sql, usage = await _write_sql(ctx, inputs.question, tables, dialect)
    try:
        if connection is None:
            guarded = guard_sql(sql, loc=("inputs", "sql"))
            result = await shared_lake_engine(ctx).run_async(ctx.tenant_id, guarded, limit=row_limit)
            ran, columns = guarded.sql, [ResultColumnOut(name=c.name, type=c.type) for c in result.columns]
            rows, truncated, elapsed_ms = result.rows, result.truncated, result.elapsed_ms
        else:
            ran, columns, rows, truncated, elapsed_ms = await asyncio.to_thread(
                _run_on_database, connection, sql, row_limit, limits.timeout_s
            )
    except VaiError as exc:
        raise QueryToolError(exc, sql=sql, source=source, usage=usage) from None
    return GenerateQueryOutput(
        sql=ran,
        columns=columns,
        rows=rows,
        truncated=truncated,
        row_count=len(rows),
        elapsed_ms=elapsed_ms,
        source=source,
        generated=inputs.sql is None,
        model_usage=usage,
    )


def _run_on_database(
    connection: ResolvedConnection, sql: str, row_limit: int, timeout_s: float
) -> tuple[str, list[ResultColumnOut], list[list[Any]], bool, float]:
    with ConnectedDatabase(connection, timeout_s=timeout_s, loc=("inputs", "sql")) as db:
        statement = db.guard(sql)
        result = db.query(statement, row_limit=row_limit)
    columns = [ResultColumnOut(**column) for column in result.columns]
    return statement.sql, columns, result.rows, result.truncated, result.elapsed_ms


_FENCE = re.compile(r"```(?:sql)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)

_SQL_INSTRUCTIONS = """You write exactly one read-only SQL query ({dialect} dialect) that answers the question.
Use only the tables and columns listed. {naming}
Answer with the SQL only: no explanation, no Markdown."""


async def _write_sql(
    ctx: ActionContext, question: str, tables: list[TableFacts], dialect: str
) -> tuple[str, ModelUsage]:
    naming = (
        "Name lake tables by their three-part names, exactly as listed (e.g. gold.shop.revenue)."
        if dialect == "duckdb"
        else "Name tables as listed."
    )
    schema = json.dumps([_brief(table) for table in tables], ensure_ascii=False, default=str)
    request = ModelRequest(
        parts=[
            SystemPromptPart(content=_SQL_INSTRUCTIONS.format(dialect=dialect, naming=naming)),
            UserPromptPart(content=f"Tables: {schema}\n\nQuestion: {question}"),
        ]
    )
    try:
        chain = await model_chain_for_action(ctx, SQL_MODEL)
    except (LLMConfigError, ValueError, NotFound) as exc:
        raise ValidationFailed.at(["inputs", "sql"], f"no SQL given, and no model can write one: {exc}") from None
    async with chain:
        try:
            answer = await chain.request([request])
        except ModelChainError as exc:
            raise ValidationFailed.at(
                ["inputs", "sql"], f"the {SQL_MODEL} model could not write the SQL: {exc}"
            ) from None
    text = "".join(part.content for part in answer.response.parts if isinstance(part, TextPart)).strip()
    fenced = _FENCE.search(text)
    sql = (fenced.group(1) if fenced else text).strip().rstrip(";").strip()
    cost = total_cost(answer.attempts)
    usage = ModelUsage(
        model=SQL_MODEL,
        cost=None if cost is None else str(cost),
        input_tokens=sum(a.input_tokens for a in answer.attempts),
        output_tokens=sum(a.output_tokens for a in answer.attempts),
        attempts=[a.as_dict() for a in answer.attempts],
    )
    return sql, usage


def _brief(table: TableFacts) -> dict[str, Any]:
    return {
        "table": table.name,
        "rows": table.rows,
        "columns": {c.name: {"type": c.type, "samples": c.samples} for c in table.columns},
        **({"description": table.description} if table.description else {}),
    }


# --- the facts ----------------------------------------------------------------------------------------------


async def _database_connection(ctx: ActionContext, ref: str) -> ResolvedConnection:
    try:
        connection = await ctx.connection(ref)
    except (LookupError, NotFound) as exc:
        raise ValidationFailed.at(["inputs", "connection"], str(exc)) from None
    if connection.provider not in DATABASE_DIALECTS:
        raise ValidationFailed.at(
            ["inputs", "connection"], f"a postgres or mysql connection is needed, not {connection.provider!r}"
        )
    return connection


async def _lake_facts(ctx: ActionContext, wanted: list[str] | None, *, stats: bool) -> tuple[list[TableFacts], bool]:
    engine = shared_lake_engine(ctx)
    lake = engine.lake(ctx.tenant_id)
    manifests = await asyncio.to_thread(lake.manifests)
    if wanted:
        by_name = {str(m.ref): m for m in manifests}
        missing = [(i, name) for i, name in enumerate(wanted) if name.lower() not in by_name]
        if missing:
            index, name = missing[0]
            raise ValidationFailed.at(
                ["inputs", "tables", index], f"unknown table {name!r} in this organization's lake"
            )
        chosen = [by_name[name.lower()] for name in wanted]
    else:
        chosen = sorted(manifests, key=lambda m: str(m.ref))
    truncated = len(chosen) > MAX_TABLES
    chosen = chosen[:MAX_TABLES]
    async with ctx.session() as session:
        described = await TableDescriptions(session, ctx.tenant).of(str(m.ref) for m in chosen)
    facts = await asyncio.gather(*(_lake_table(ctx, engine, m, stats) for m in chosen))
    for table in facts:
        row = described.get(table.name)
        if row is not None:
            table.description = row.description or None
            for column in table.columns:
                column.description = row.columns.get(column.name)
    return list(facts), truncated


async def _lake_table(ctx: ActionContext, engine: LakeQueryEngine, manifest: Manifest, stats: bool) -> TableFacts:
    ref: TableRef = manifest.ref
    names = [c.name for c in manifest.columns]
    sample = await engine.run_async(ctx.tenant_id, guard_sql(f"SELECT * FROM {ref}"), limit=SAMPLE_ROWS)
    columns = [
        ColumnFacts(name=c.name, type=c.type, samples=_samples(sample.rows, i)) for i, c in enumerate(manifest.columns)
    ]
    if stats and names:
        parts = ", ".join(
            f'count("{_ident(n)}") AS "nn{i}", approx_count_distinct("{_ident(n)}") AS "d{i}"'
            for i, n in enumerate(names)
        )
        counted = await engine.run_async(ctx.tenant_id, guard_sql(f'SELECT count(*) AS "n", {parts} FROM {ref}'))
        row = counted.rows[0]
        total = int(row[0] or 0)
        for i, column in enumerate(columns):
            column.null_share = None if total == 0 else round(1 - int(row[1 + 2 * i] or 0) / total, 4)
            column.distinct = int(row[2 + 2 * i] or 0)
    published = manifest.published_at
    return TableFacts(
        name=str(ref),
        rows=manifest.rows,
        columns=columns,
        published_at=published.isoformat().replace("+00:00", "Z"),
        freshness_s=round(max((utcnow() - published).total_seconds(), 0.0), 3),
    )


def _database_facts(
    connection: ResolvedConnection, wanted: list[str] | None, timeout_s: float, *, stats: bool
) -> tuple[list[TableFacts], bool]:
    with ConnectedDatabase(connection, timeout_s=timeout_s, loc=("inputs", "connection")) as db:
        found = db.tables(wanted, max_tables=MAX_TABLES + 1)
        truncated = len(found) > MAX_TABLES
        facts = []
        for schema, table in found[:MAX_TABLES]:
            name = table if schema is None else f"{schema}.{table}"
            described = db.columns(schema, table)
            target = db.table_sql(schema, table)
            sample = db.query(db.guard(f"SELECT * FROM {target}"), row_limit=SAMPLE_ROWS)
            columns = [
                ColumnFacts(name=c["name"], type=c["type"], samples=_samples(sample.rows, i))
                for i, c in enumerate(described)
            ]
            parts = ", ".join(
                f"count({db.column_sql(c.name)}), count(DISTINCT {db.column_sql(c.name)})" for c in columns
            )
            counted = db.query(
                db.guard(f"SELECT count(*){', ' + parts if stats and parts else ''} FROM {target}"), row_limit=1
            )
            row = counted.rows[0]
            total = int(row[0] or 0)
            if stats:
                for i, column in enumerate(columns):
                    column.null_share = None if total == 0 else round(1 - int(row[1 + 2 * i] or 0) / total, 4)
                    column.distinct = int(row[2 + 2 * i] or 0)
            facts.append(TableFacts(name=name, rows=total, columns=columns))
    return facts, truncated


def _samples(rows: list[list[Any]], index: int) -> list[JsonValue]:
    seen: list[JsonValue] = []
    for row in rows:
        value = row[index]
        if isinstance(value, str) and len(value) > SAMPLE_CHARS:
            value = value[:SAMPLE_CHARS] + "…"
        if value is not None and value not in seen:
            seen.append(value)
        if len(seen) == SAMPLES_PER_COLUMN:
            break
    return seen


def _ident(name: str) -> str:
    return name.replace('"', '""')
