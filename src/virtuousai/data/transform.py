"""``sql_transform`` and ``load``: the blocking halves of those kinds (run them in a thread).

A transform guards its SQL exactly like ``POST /query`` and runs it in a query process of its own, with the
transform's larger memory and time limits, on the organization's locked DuckDB (which can read the lake but write
nothing); that process streams the Arrow result into a staged parquet file with pyarrow, and this one publishes it
into silver or gold with the atomic manifest swap. Cancelling the run kills the process. A load reads a lake
table's current files with pyarrow and hands the batches to dlt, which writes them into the destination
connection.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.dataset as pads

from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.data.extract import ExtractFailed, ProgressCallback, configure_dlt, redact
from virtuousai.data.guard import guard_sql
from virtuousai.data.isolation import CallCancelled
from virtuousai.data.lake import PublishResult, TableRef, TenantLake
from virtuousai.data.sources import sql_engine
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import CancellationToken, ResolvedConnection


@dataclass
class TransformJob:
    tenant_id: str
    run_id: str
    data_dir: Path
    sql: str
    layer: Literal["silver", "gold"]
    dataset: str
    table: str
    mode: Literal["replace", "append"]
    max_rows: int
    timeout_s: float
    threads: int = 2
    memory_limit: str = "1GB"
    cancel: CancellationToken = field(default_factory=CancellationToken)


@dataclass(frozen=True)
class TransformResult:
    rows: int
    published: PublishResult
    sources: frozenset[TableRef]


def run_transform(job: TransformJob) -> TransformResult:
    guarded = guard_sql(job.sql, loc=("inputs", "sql"))
    target = TableRef(job.layer, job.dataset, job.table)
    if target in guarded.tables and job.mode == "append":
        raise ValidationFailed.at(["inputs", "target"], f"an append transform cannot read its own target {target}")
    limits = QueryLimits(
        row_cap=job.max_rows, timeout_s=job.timeout_s, threads=job.threads, memory_limit=job.memory_limit
    )
    # Its own query process, with the transform's limits: killed at its deadline, when cancelled, and at the end.
    engine = LakeQueryEngine(job.data_dir / "lake", limits, max_instances=1, processes=1)
    lake = engine.lake(job.tenant_id)
    staging = lake.staging_dir(job.run_id)
    try:
        out = staging / "result.parquet"
        try:
            rows = engine.write_parquet(
                job.tenant_id, guarded, out, max_rows=job.max_rows, cancelled=lambda: job.cancel.cancelled
            )
        except CallCancelled:
            job.cancel.raise_if_cancelled()
            raise
        job.cancel.raise_if_cancelled()
        published = lake.publish(target, [out], job.mode, load_id=job.run_id, run_id=job.run_id)
    finally:
        lake.drop_staging(staging)
        engine.close()
    return TransformResult(rows, published, guarded.tables)


# --- load -----------------------------------------------------------------------------------------------------


@dataclass
class LoadJob:
    tenant_id: str
    run_id: str
    data_dir: Path
    source: tuple[str, str, str]
    connection: ResolvedConnection
    dataset: str
    table: str
    write_disposition: Literal["replace", "append", "merge"] = "replace"
    primary_key: Sequence[str] = ()
    cancel: CancellationToken = field(default_factory=CancellationToken)
    on_progress: ProgressCallback | None = None


@dataclass(frozen=True)
class LoadResult:
    table: str
    rows: int
    load_id: str | None


def _destination(job: LoadJob) -> tuple[Any, str]:
    """A dlt destination for the connection, and the dataset name to use there."""
    import dlt

    provider = job.connection.provider
    if provider == "duckdb":
        return dlt.destinations.duckdb(credentials=str(job.connection.config["path"])), job.dataset
    if provider == "sqlite":
        # SQLite has no schemas; dlt would attach a second file per dataset, so load into the file itself.
        path = Path(str(job.connection.config["path"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        return dlt.destinations.sqlalchemy(credentials=sql_engine(job.connection)), "main"
    if provider == "postgres":
        return dlt.destinations.sqlalchemy(credentials=sql_engine(job.connection)), job.dataset
    raise ValidationFailed.at(
        ["inputs", "connection"], f"load writes to postgres, sqlite or duckdb connections, not {provider!r}"
    )


def run_load(job: LoadJob) -> LoadResult:
    import dlt

    configure_dlt()
    layer, dataset, table = job.source
    ref = TableRef(layer, dataset, table)
    lake = TenantLake(job.data_dir / "lake", job.tenant_id)
    manifest = lake.manifest(ref)
    if manifest is None:
        raise ValidationFailed.at(["inputs", "source"], f"unknown table {str(ref)!r} in this organization's lake")
    if job.write_disposition == "merge" and not job.primary_key:
        raise ValidationFailed.at(["inputs", "primary_key"], "write_disposition merge needs primary_key")
    files = [str(f) for f in lake.absolute_files(manifest)]
    destination, dataset_name = _destination(job)
    rows_sent = 0

    def batches() -> Iterator[pa.Table]:
        nonlocal rows_sent
        if not files:
            return
        for batch in pads.dataset(files, format="parquet").to_batches(batch_size=50_000):
            job.cancel.raise_if_cancelled()
            rows_sent += batch.num_rows
            if job.on_progress is not None:
                job.on_progress(str(ref), rows_sent)
            yield pa.Table.from_batches([batch])

    hints: dict[str, Any] = {"primary_key": list(job.primary_key)} if job.primary_key else {}
    resource = dlt.resource(batches(), name=job.table, write_disposition=job.write_disposition, **hints)
    work = Path(tempfile.mkdtemp(prefix=f"load-{job.run_id}-", dir=_work_root(job)))
    try:
        pipeline = dlt.pipeline(
            pipeline_name="load", pipelines_dir=str(work), destination=destination, dataset_name=dataset_name
        )
        try:
            info = pipeline.run(resource)
        except Exception as exc:
            job.cancel.raise_if_cancelled()
            secrets = [str(v) for v in job.connection.secrets.values() if v]
            raise ExtractFailed(redact(f"{type(exc).__name__}: {exc}", secrets)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return LoadResult(table=job.table, rows=rows_sent, load_id=info.loads_ids[-1] if info.loads_ids else None)


def _work_root(job: LoadJob) -> Path:
    root = job.data_dir / "dlt" / job.tenant_id / "loads"
    root.mkdir(parents=True, exist_ok=True)
    return root
