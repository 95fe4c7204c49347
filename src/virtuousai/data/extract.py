"""Run dlt into bronze: extract → staged parquet → publish, with cursors that advance only when data is published.

Folders (per organization, connection and dataset; outside the lake, never readable by queries)::

    <data_dir>/dlt/<tenant>/<connection>__<dataset>/
        state -> state-<run>      a symlink to the folder of the last successful run:
        state-<run>/pipelines/    dlt's pipelines_dir (schema, incremental cursors)
        state-<run>/destination/  dlt's filesystem destination (its _dlt_* bookkeeping; data files move out)
        work-<run>/               this run's copy of state; becomes ``state`` only after a successful publish

dlt keeps its destination's bookkeeping next to its state: a destination it has never seen makes it start the
cursors over, so both travel together. dlt writes parquet into ``work-<run>/destination/<dataset>/<table>/``. When
the load finishes, each table's new files are moved into ``<lake>/<tenant>/bronze/<dataset>/<table>/`` and made
current with an atomic manifest swap (``lake.py``), and only then does ``state`` switch to the work copy. A run that
is cancelled or fails anywhere before that drops its work folder: readers stay on the previous complete version,
and the next run starts from the previous cursors.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from virtuousai.data.lake import ColumnInfo, PublishResult, TableRef, TenantLake, describe_parquet, sql_string
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import CancellationToken, Cancelled

WriteDisposition = Literal["append", "replace", "merge"]
SchemaContract = Literal["evolve", "freeze"]
ProgressCallback = Callable[[str, int], None]  # (table, rows so far)


class ExtractFailed(RuntimeError):
    """dlt failed for a reason outside our checks (the source refused, the network failed). Secrets are redacted."""


@dataclass
class ExtractJob:
    tenant_id: str
    run_id: str
    data_dir: Path
    dataset: str
    pipeline_key: str  # the connection id (or "files"): one dlt state per organization, connection and dataset
    resources: Sequence[Any]  # dlt resources
    expected_tables: Sequence[str]
    write_disposition: WriteDisposition = "append"
    primary_key: dict[str, list[str]] = field(default_factory=dict)
    schema_contract: SchemaContract = "evolve"
    cancel: CancellationToken = field(default_factory=CancellationToken)
    on_progress: ProgressCallback | None = None
    secrets: Sequence[str] = ()  # values to redact from any error message


@dataclass(frozen=True)
class ExtractedTable:
    table: str
    rows: int
    published: PublishResult | None


@dataclass(frozen=True)
class ExtractResult:
    load_id: str | None
    tables: tuple[ExtractedTable, ...]


def redact(text: str, secrets: Sequence[str]) -> str:
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def configure_dlt() -> None:
    # No telemetry (nothing may leave the machine unasked) and no progress output.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    # Files whose inferred types differ (an int column that is a float in the next file) merge losslessly.
    os.environ.setdefault("DATA_WRITER__ARROW_CONCAT_PROMOTE_OPTIONS", "default")


def _rows_in(item: Any) -> int:
    if isinstance(item, pa.Table | pa.RecordBatch | list):
        return len(item)
    return 1


def _gate(job: ExtractJob, table: str) -> Callable[[Any], Any]:
    """A map on every chunk: the safe point where cancellation is checked and progress counted."""
    seen = 0

    def check(item: Any) -> Any:
        nonlocal seen
        job.cancel.raise_if_cancelled()
        first = seen == 0
        seen += _rows_in(item)
        if job.on_progress is not None and (first or seen // 100_000 != (seen - _rows_in(item)) // 100_000):
            job.on_progress(table, seen)
        return item

    return check


def _state_paths(job: ExtractJob) -> tuple[Path, Path]:
    root = job.data_dir / "dlt" / job.tenant_id / f"{job.pipeline_key}__{job.dataset}"
    return root / "state", root / f"work-{job.run_id}-{uuid.uuid4().hex[:8]}"


def _promote_state(state_link: Path, work_dir: Path) -> None:
    """Point ``state`` at this run's folder in one atomic rename of a symlink; drop the folder it pointed at."""
    previous = state_link.resolve() if state_link.is_symlink() else None
    final = state_link.with_name("state-" + work_dir.name.removeprefix("work-"))
    os.replace(work_dir, final)
    temporary_link = state_link.with_name(f".state-{uuid.uuid4().hex}")
    temporary_link.symlink_to(final.name)
    os.replace(temporary_link, state_link)
    if previous is not None and previous != final:
        shutil.rmtree(previous, ignore_errors=True)


def run_extract(job: ExtractJob) -> ExtractResult:
    """Extract, normalise and load with dlt into the work folder, then publish into bronze. Blocking (use a thread)."""
    import dlt
    from dlt.common.schema.exceptions import DataValidationError

    configure_dlt()
    lake = TenantLake(job.data_dir / "lake", job.tenant_id)
    state_link, work_dir = _state_paths(job)
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    if state_link.exists():
        shutil.copytree(state_link.resolve(), work_dir, symlinks=True)
    else:
        work_dir.mkdir()
    destination = work_dir / "destination"
    try:
        for resource in job.resources:
            resource.add_map(_gate(job, resource.name))
        pipeline = dlt.pipeline(
            pipeline_name="extract",
            pipelines_dir=str(work_dir / "pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=str(destination)),
            dataset_name=job.dataset,
        )
        contract: Any = (
            {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}
            if job.schema_contract == "freeze"
            else "evolve"
        )
        try:
            info = pipeline.run(
                list(job.resources), loader_file_format="parquet", write_disposition="append", schema_contract=contract
            )
        except Exception as exc:
            if job.cancel.cancelled:
                raise Cancelled(job.cancel.reason or "cancelled") from None
            violation = _find_cause(exc, DataValidationError)
            if violation is not None:
                raise ValidationFailed.at(
                    ["inputs", "schema_contract"],
                    f"schema contract is freeze: table {violation.table_name!r} got new or changed column "
                    f"{violation.column_name!r}",
                ) from None
            raise ExtractFailed(redact(f"{type(exc).__name__}: {exc}", job.secrets)) from None
        job.cancel.raise_if_cancelled()
        load_id = info.loads_ids[-1] if info.loads_ids else None
        schema = pipeline.default_schema
        staged = _staged_files(destination / job.dataset, schema.data_table_names())
        tables = sorted(set(staged) | set(job.expected_tables))
        if job.schema_contract == "freeze":
            _refuse_new_columns(lake, job.dataset, staged)
        results = []
        for table in tables:
            job.cancel.raise_if_cancelled()
            files = staged.get(table, [])
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            published = _publish(lake, job, table, files, schema, work_dir, load_id)
            results.append(ExtractedTable(table, rows, published))
        # Completed load packages are copies of the data, and the trace is not needed: keep the state small.
        shutil.rmtree(work_dir / "pipelines" / "extract" / "load" / "loaded", ignore_errors=True)
        (work_dir / "pipelines" / "extract" / "trace.pickle").unlink(missing_ok=True)
        _promote_state(state_link, work_dir)
        return ExtractResult(load_id, tuple(results))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _find_cause(exc: BaseException, kind: type[Any]) -> Any:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "exception", None)
    return None


def _staged_files(dataset_dir: Path, tables: Sequence[str]) -> dict[str, list[Path]]:
    staged = {}
    for table in tables:
        if table.startswith("_dlt"):
            continue
        files = sorted((dataset_dir / table).glob("*.parquet"))
        if files:
            staged[table] = files
    return staged


def _refuse_new_columns(lake: TenantLake, dataset: str, staged: dict[str, list[Path]]) -> None:
    """Freeze: nothing is published if any staged table has a column its current version does not have."""
    for table, files in staged.items():
        current = lake.manifest(TableRef("bronze", dataset, table))
        if current is None:
            continue
        known = {c.name for c in current.columns}
        for column in describe_parquet(files):
            if column.name not in known:
                raise ValidationFailed.at(
                    ["inputs", "schema_contract"],
                    f"schema contract is freeze: table {table!r} got new column {column.name!r}",
                )


def _primary_key(job: ExtractJob, table: str, schema: Any) -> list[str]:
    if table in job.primary_key:
        return job.primary_key[table]
    columns = schema.tables.get(table, {}).get("columns", {})
    keys = [name for name, column in columns.items() if column.get("primary_key")]
    if not keys:
        raise ValidationFailed.at(
            ["inputs", "primary_key", table], f"write_disposition merge needs a primary key for table {table!r}"
        )
    return keys


def _publish(
    lake: TenantLake,
    job: ExtractJob,
    table: str,
    files: list[Path],
    schema: Any,
    scratch: Path,
    load_id: str | None,
) -> PublishResult | None:
    ref = TableRef("bronze", job.dataset, table)
    if job.write_disposition == "replace":
        # An empty replace keeps the table's columns: the current ones, else the names dlt saw (types unknown).
        names = schema.tables.get(table, {}).get("columns", {})
        columns = None if lake.manifest(ref) else [ColumnInfo(name, "VARCHAR") for name in names]
        return lake.publish(ref, files, "replace", load_id=load_id, run_id=job.run_id, columns=columns)
    if not files:
        return None  # nothing new: the current version stays
    if job.write_disposition == "append":
        return lake.publish(ref, files, "append", load_id=load_id, run_id=job.run_id)
    keys = _primary_key(job, table, schema)
    current = lake.manifest(ref)
    if current is None:
        return lake.publish(ref, [_merge(scratch, [], files, keys)], "replace", load_id=load_id, run_id=job.run_id)
    merged = _merge(scratch, lake.absolute_files(current), files, keys)
    return lake.publish(ref, [merged], "replace", load_id=load_id, run_id=job.run_id)


def _merge(scratch: Path, current: Sequence[Path], new: Sequence[Path], keys: Sequence[str]) -> Path:
    """One parquet file: the current rows whose key is not in the new rows, plus the new rows (last one per key)."""
    out = scratch / f"merged-{uuid.uuid4().hex}.parquet"
    key_list = ", ".join(f'"{k}"' for k in keys)
    new_list = ", ".join(sql_string(str(f)) for f in new)
    fresh = (
        f"SELECT * FROM read_parquet([{new_list}], union_by_name = true) "
        f"QUALIFY row_number() OVER (PARTITION BY {key_list}) = 1"
    )
    if current:
        old_list = ", ".join(sql_string(str(f)) for f in current)
        join = " AND ".join(f'o."{k}" IS NOT DISTINCT FROM n."{k}"' for k in keys)
        body = (
            f"SELECT * FROM read_parquet([{old_list}], union_by_name = true) o WHERE NOT EXISTS "
            f"(SELECT 1 FROM read_parquet([{new_list}], union_by_name = true) n WHERE {join}) "
            f"UNION ALL BY NAME {fresh}"
        )
    else:
        body = fresh
    con = duckdb.connect(":memory:", config={"threads": 1})
    try:
        con.execute(f"COPY ({body}) TO {sql_string(str(out))} (FORMAT parquet)")
    finally:
        con.close()
    return out
