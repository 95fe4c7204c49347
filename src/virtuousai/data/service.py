"""Data decisions: the catalog, table previews and guarded queries, always within the caller's organization.

The lake folder is chosen from the authenticated tenant, never from the request, so one organization's queries
can only ever resolve its own manifests and files.
"""

from __future__ import annotations

import asyncio

from virtuousai.data.catalog import build_catalog
from virtuousai.data.engine import LakeQueryEngine, QueryResult
from virtuousai.data.guard import GuardedQuery, guard_sql
from virtuousai.data.lake import LAYERS, NAME_PATTERN, TableRef
from virtuousai.data.models import DatasetCatalog
from virtuousai.errors import NotFound
from virtuousai.store.tenant import TenantContext


class DataService:
    def __init__(self, engine: LakeQueryEngine, tenant: TenantContext) -> None:
        self.engine = engine
        self.tenant = tenant

    async def catalog(self) -> DatasetCatalog:
        return await asyncio.to_thread(build_catalog, self.engine.lake(self.tenant.tenant_id))

    async def query(self, sql: str, limit: int | None) -> QueryResult:
        guarded = guard_sql(sql)  # cheap and pure: refuse before waiting for a query process
        return await self.engine.run_async(self.tenant.tenant_id, guarded, limit=limit)

    async def preview(self, layer: str, qualified_table: str, limit: int | None) -> QueryResult:
        """The first rows of ``<layer>/<dataset>.<table>``; a table this organization does not have is a 404."""
        ref = self.table_ref(layer, qualified_table)
        lake = self.engine.lake(self.tenant.tenant_id)
        if await asyncio.to_thread(lake.manifest, ref) is None:
            raise NotFound(f"no table {str(ref)!r} in this organization's lake")
        guarded: GuardedQuery = guard_sql(f"SELECT * FROM {ref}")
        return await self.engine.run_async(self.tenant.tenant_id, guarded, limit=limit)

    @staticmethod
    def table_ref(layer: str, qualified_table: str) -> TableRef:
        dataset, _, table = qualified_table.partition(".")
        if layer not in LAYERS or not NAME_PATTERN.fullmatch(dataset) or not NAME_PATTERN.fullmatch(table):
            raise NotFound(f"no table {layer}.{qualified_table!s} in this organization's lake")
        return TableRef(layer, dataset, table)
