"""The catalog: what the organization's lake holds, read from the tables' manifests (no database table needed)."""

from __future__ import annotations

from datetime import datetime

from virtuousai.data.lake import LAYERS, Manifest, TenantLake
from virtuousai.data.models import ColumnPublic, DatasetCatalog, LayerPublic, TablePublic
from virtuousai.timeutil import utcnow


def table_public(manifest: Manifest, now: datetime) -> TablePublic:
    ref = manifest.ref
    return TablePublic(
        name=str(ref),
        layer=ref.layer,  # TableRef checked it is one of LAYERS
        dataset=ref.dataset,
        table=ref.table,
        columns=[ColumnPublic(name=c.name, type=c.type) for c in manifest.columns],
        row_count=manifest.rows,
        file_count=len(manifest.files),
        version=manifest.version,
        last_load_at=manifest.published_at,
        last_load_id=manifest.load_id,
        last_run_id=manifest.run_id,
        freshness_s=round(max((now - manifest.published_at).total_seconds(), 0.0), 3),
    )


def build_catalog(lake: TenantLake) -> DatasetCatalog:
    now = utcnow()
    manifests = lake.manifests()
    return DatasetCatalog(
        layers=[
            LayerPublic(
                name=layer,
                tables=[table_public(m, now) for m in manifests if m.ref.layer == layer],
            )
            for layer in LAYERS
        ]
    )
