"""Helpers for data tests: publish small parquet tables straight into a tenant's lake."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from virtuousai.data.lake import PublishMode, PublishResult, TableRef, TenantLake
from virtuousai.ids import new_id
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store.tenant import TenantContext


def publish_rows(
    lake: TenantLake, qualified: str, rows: list[dict[str, object]], mode: PublishMode = "replace"
) -> PublishResult:
    """Write ``rows`` as one parquet file and publish it as ``<layer>.<dataset>.<table>``."""
    ref = TableRef(*qualified.split("."))
    staging = lake.staging_dir("test")
    pq.write_table(pa.Table.from_pylist(rows), staging / "rows.parquet")
    try:
        return lake.publish(ref, [staging / "rows.parquet"], mode, load_id="test-load", run_id="run_test")
    finally:
        lake.drop_staging(staging)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash: compare before and after to prove nothing changed."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def make_context(
    data_dir: Path,
    connection: ResolvedConnection | None = None,
    *,
    connections: Mapping[str, ResolvedConnection] | None = None,
    tenant_id: str = "org_test",
    options: dict[str, Any] | None = None,
    on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> ActionContext:
    """An ActionContext as the runtime builds one, with the connection resolver seam returning ``connection`` (any
    reference), or ``connections[reference]``."""

    async def resolve(ref: str) -> ResolvedConnection:
        if connections is not None:
            return connections[ref]
        if connection is None:
            raise LookupError(f"connection {ref!r}: none in this test")
        return connection

    async def emit(kind: str, data: Mapping[str, Any]) -> None:
        if on_event is not None:
            on_event(kind, data)

    return ActionContext(
        run_id=new_id("run"),
        tenant=TenantContext(tenant_id=tenant_id),
        data_dir=data_dir,
        options=options or {},
        _emit=emit,
        _resolve=resolve,
    )


def lake_of(ctx: ActionContext) -> TenantLake:
    return TenantLake(ctx.data_dir / "lake", ctx.tenant_id)
