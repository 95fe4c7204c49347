"""``/datasets`` (the catalog and previews) and ``/query`` (guarded SQL over the organization's lake)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from virtuousai.api.deps import PrincipalDep, SettingsDep
from virtuousai.data.engine import LakeQueryEngine, QueryLimits, QueryResult
from virtuousai.data.models import ColumnPublic, DatasetCatalog, QueryRequest, QueryResponse
from virtuousai.data.service import DataService

router = APIRouter(tags=["data"])


def get_lake_engine(request: Request, settings: SettingsDep) -> LakeQueryEngine:
    """One engine per app, made on first use (it holds the per-organization locked DuckDB instances)."""
    engine: LakeQueryEngine | None = getattr(request.app.state, "lake_engine", None)
    if engine is None:
        engine = LakeQueryEngine(settings.lake_dir, QueryLimits.from_settings(settings))
        request.app.state.lake_engine = engine
    return engine


LakeEngineDep = Annotated[LakeQueryEngine, Depends(get_lake_engine)]


def _response(result: QueryResult) -> QueryResponse:
    return QueryResponse(
        columns=[ColumnPublic(name=c.name, type=c.type) for c in result.columns],
        rows=result.rows,
        truncated=result.truncated,
        elapsed_ms=result.elapsed_ms,
    )


@router.get("/datasets", response_model=DatasetCatalog)
async def list_datasets(principal: PrincipalDep, engine: LakeEngineDep) -> DatasetCatalog:
    """Every published table by layer: columns with types, row counts, last load and freshness."""
    return await DataService(engine, principal.tenant).catalog()


@router.get("/datasets/{layer}/{table}/preview", response_model=QueryResponse)
async def preview_table(
    layer: str,
    table: str,
    principal: PrincipalDep,
    engine: LakeEngineDep,
    limit: Annotated[int | None, Query(ge=1, description="Most rows (capped by the server's row cap).")] = 100,
) -> QueryResponse:
    """The first rows of a table; ``{table}`` is ``<dataset>.<table>``: ``/datasets/bronze/shop.orders/preview``."""
    return _response(await DataService(engine, principal.tenant).preview(layer, table, limit))


@router.post("/query", response_model=QueryResponse)
async def run_query(body: QueryRequest, principal: PrincipalDep, engine: LakeEngineDep) -> QueryResponse:
    """Run one guarded read-only query over the organization's lake (tables as ``<layer>.<dataset>.<table>``)."""
    return _response(await DataService(engine, principal.tenant).query(body.sql, body.limit))
