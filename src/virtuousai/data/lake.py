"""The organization's lake: ``<data_dir>/lake/<tenant_id>/<layer>/<dataset>/<table>/``.

Each table folder holds immutable parquet files under ``data/v<version>/`` and one ``_manifest.json`` naming the
files of the current version. Readers resolve the manifest, never list the folder, so a writer publishes a new
version by moving its finished files in and then swapping the manifest with one atomic ``os.replace``: a cancelled
or failed writer leaves readers on the previous complete version, and a reader never sees half a load.

Files of the version before the current one are kept (a query that resolved it a moment ago can still finish);
anything older is removed when the next version is published.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from virtuousai.errors import ValidationFailed
from virtuousai.timeutil import utcnow

LAYERS: tuple[str, ...] = ("bronze", "silver", "gold")
Layer = Literal["bronze", "silver", "gold"]
PublishMode = Literal["append", "replace"]

# Dataset and table names become folder names and SQL identifiers: lower snake case, no dots, no traversal.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = 1


def check_name(value: str, loc: Sequence[str | int], what: str = "name") -> str:
    """A dataset or table name, or a 422 at ``loc`` saying what is allowed."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValidationFailed.at(
            loc, f"{what} {value!r} must be lower snake case: a letter, then letters, digits or _ (at most 63)"
        )
    return value


@dataclass(frozen=True, order=True)
class TableRef:
    """A lake table by its three-part SQL name ``<layer>.<dataset>.<table>``."""

    layer: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValidationFailed.at(["layer"], f"layer {self.layer!r} is not one of {', '.join(LAYERS)}")
        check_name(self.dataset, ["dataset"], "dataset")
        check_name(self.table, ["table"], "table")

    def __str__(self) -> str:
        return f"{self.layer}.{self.dataset}.{self.table}"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # DuckDB's type name, exactly what a query over the table sees


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the table folder
    rows: int


@dataclass(frozen=True)
class Manifest:
    """One published version of a table."""

    ref: TableRef
    version: int
    files: tuple[DataFile, ...]
    columns: tuple[ColumnInfo, ...]
    published_at: datetime
    load_id: str | None = None
    run_id: str | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "layer": self.ref.layer,
            "dataset": self.ref.dataset,
            "table": self.ref.table,
            "version": self.version,
            "files": [{"path": f.path, "rows": f.rows} for f in self.files],
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
            "published_at": self.published_at.isoformat(),
            "load_id": self.load_id,
            "run_id": self.run_id,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Manifest:
        return cls(
            ref=TableRef(doc["layer"], doc["dataset"], doc["table"]),
            version=int(doc["version"]),
            files=tuple(DataFile(str(f["path"]), int(f["rows"])) for f in doc["files"]),
            columns=tuple(ColumnInfo(str(c["name"]), str(c["type"])) for c in doc["columns"]),
            published_at=datetime.fromisoformat(doc["published_at"]),
            load_id=doc.get("load_id"),
            run_id=doc.get("run_id"),
        )


@dataclass(frozen=True)
class SchemaChange:
    """How a publish changed a table's columns (what ``dlt_extract`` reports as schema changes)."""

    table: str
    added: tuple[ColumnInfo, ...] = ()
    removed: tuple[ColumnInfo, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, old type, new type)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.retyped)


def diff_columns(table: str, old: Sequence[ColumnInfo], new: Sequence[ColumnInfo]) -> SchemaChange:
    old_by_name = {c.name: c for c in old}
    new_by_name = {c.name: c for c in new}
    return SchemaChange(
        table=table,
        added=tuple(c for c in new if c.name not in old_by_name),
        removed=tuple(c for c in old if c.name not in new_by_name),
        retyped=tuple(
            (c.name, old_by_name[c.name].type, c.type)
            for c in new
            if c.name in old_by_name and old_by_name[c.name].type != c.type
        ),
    )


@dataclass(frozen=True)
class PublishResult:
    manifest: Manifest
    previous: Manifest | None
    schema_change: SchemaChange
    files_written: tuple[str, ...] = field(default=())


def describe_parquet(files: Sequence[Path]) -> tuple[ColumnInfo, ...]:
    """The columns DuckDB sees over these files (union by name, as the query views read them)."""
    import duckdb  # local: only publishers pay for a DuckDB instance here

    con = duckdb.connect(":memory:", config={"threads": 1, "enable_external_access": True})
    try:
        listing = ", ".join(sql_string(str(f)) for f in files)
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet([{listing}], union_by_name = true)").fetchall()
    finally:
        con.close()
    return tuple(ColumnInfo(str(r[0]), str(r[1])) for r in rows)


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


class TenantLake:
    """One organization's lake folder. Every path it hands out is inside ``root``."""

    def __init__(self, lake_dir: Path, tenant_id: str) -> None:
        if not _TENANT_PATTERN.fullmatch(tenant_id):
            raise ValueError(f"not a tenant id: {tenant_id!r}")
        self.tenant_id = tenant_id
        self.root = (lake_dir / tenant_id).resolve()

    def table_dir(self, ref: TableRef) -> Path:
        return self.root / ref.layer / ref.dataset / ref.table

    def manifest(self, ref: TableRef) -> Manifest | None:
        return self._read_manifest(self.table_dir(ref) / MANIFEST_NAME)

    def manifests(self) -> list[Manifest]:
        """Every published table, sorted by layer, dataset and table."""
        found = []
        for path in sorted(self.root.glob(f"*/*/*/{MANIFEST_NAME}")):
            manifest = self._read_manifest(path)
            if manifest is not None and manifest.ref.layer in LAYERS:
                found.append(manifest)
        return sorted(found, key=lambda m: (LAYERS.index(m.ref.layer), m.ref.dataset, m.ref.table))

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Changes whenever any table publishes a new version (cheap: one stat per table)."""
        entries = []
        for path in self.root.glob(f"*/*/*/{MANIFEST_NAME}"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((str(path), stat.st_mtime_ns, stat.st_ino))
        return tuple(sorted(entries))

    def absolute_files(self, manifest: Manifest) -> list[Path]:
        table_dir = self.table_dir(manifest.ref)
        return [table_dir / f.path for f in manifest.files]

    def staging_dir(self, run_id: str) -> Path:
        """Scratch space for a writer, on the same filesystem as the lake (so publishing is a rename).

        It lives beside the layers, not in them: no manifest points into it, so no reader can see it.
        """
        path = self.root / "_staging" / f"{run_id}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    @contextmanager
    def table_lock(self, ref: TableRef) -> Iterator[None]:
        """Serialise publishers of one table (readers never take it)."""
        table_dir = self.table_dir(ref)
        table_dir.mkdir(parents=True, exist_ok=True)
        with open(table_dir / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def publish(
        self,
        ref: TableRef,
        staged_files: Sequence[Path],
        mode: PublishMode,
        *,
        load_id: str | None = None,
        run_id: str | None = None,
        columns: Sequence[ColumnInfo] | None = None,
    ) -> PublishResult:
        """Move finished parquet files into the table and make them current in one atomic manifest swap.

        ``append`` adds them to the current version's files; ``replace`` makes them the only files.
        ``columns`` is needed only when ``staged_files`` is empty (a replace with no rows).
        """
        with self.table_lock(ref):
            previous = self.manifest(ref)
            version = previous.version + 1 if previous else 1
            table_dir = self.table_dir(ref)
            version_dir = table_dir / "data" / f"v{version:06d}"
            version_dir.mkdir(parents=True, exist_ok=False)
            new_files: list[DataFile] = []
            for index, staged in enumerate(staged_files):
                target = version_dir / f"part-{index:05d}.parquet"
                os.replace(staged, target)
                new_files.append(DataFile(str(target.relative_to(table_dir)), pq.ParquetFile(target).metadata.num_rows))
            kept = previous.files if (mode == "append" and previous) else ()
            files = (*kept, *new_files)
            if files:
                described = describe_parquet([table_dir / f.path for f in files])
            else:
                described = tuple(columns or (previous.columns if previous else ()))
            manifest = Manifest(
                ref=ref,
                version=version,
                files=files,
                columns=described,
                published_at=utcnow(),
                load_id=load_id,
                run_id=run_id,
            )
            self._write_manifest(table_dir / MANIFEST_NAME, manifest)
            self._remove_unreferenced(table_dir, manifest, previous)
        change = diff_columns(ref.table, previous.columns if previous else (), manifest.columns)
        return PublishResult(manifest, previous, change, tuple(f.path for f in new_files))

    def drop_staging(self, staging: Path) -> None:
        if staging.is_relative_to(self.root / "_staging"):
            shutil.rmtree(staging, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------------------------

    @staticmethod
    def _read_manifest(path: Path) -> Manifest | None:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return Manifest.from_json(doc)

    @staticmethod
    def _write_manifest(path: Path, manifest: Manifest) -> None:
        temporary = path.with_name(f".{MANIFEST_NAME}.{uuid.uuid4().hex}")
        with open(temporary, "w") as handle:
            json.dump(manifest.to_json(), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # the publish point: readers see the old or the new version, never a mix

    @staticmethod
    def _remove_unreferenced(table_dir: Path, current: Manifest, previous: Manifest | None) -> None:
        keep = {f.path for f in current.files} | {f.path for f in (previous.files if previous else ())}
        data_dir = table_dir / "data"
        for version_dir in sorted(data_dir.iterdir()):
            for file in version_dir.iterdir():
                if str(file.relative_to(table_dir)) not in keep:
                    file.unlink()
            if not any(version_dir.iterdir()):
                version_dir.rmdir()
