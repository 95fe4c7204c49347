"""``/datasets`` (the catalog and previews) and ``/query`` (guarded SQL over the organization's lake)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic_core import to_json

from virtuousai.api.deps import PrincipalDep
from virtuousai.config import Settings
from virtuousai.data.engine import LakeQueryEngine, QueryLimits, QueryResult
from virtuousai.data.models import DatasetCatalog, QueryRequest, QueryResponse
from virtuousai.data.service import DataService

router = APIRouter(tags=["data"])


async def get_lake_engine(request: Request) -> LakeQueryEngine:
    """One engine per app, made on first use (it holds the per-organization locked DuckDB instances).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    per request for what is an attribute lookup.
    """
    engine: LakeQueryEngine | None = getattr(request.app.state, "lake_engine", None)
    if engine is None:
        settings: Settings = request.app.state.settings
        engine = LakeQueryEngine(settings.lake_dir, QueryLimits.from_settings(settings))
        request.app.state.lake_engine = engine
    return engine


LakeEngineDep = Annotated[LakeQueryEngine, Depends(get_lake_engine)]


def _response(result: QueryResult) -> Response:
    """A ``QueryResponse``, serialised once here.

    The rows are JSON values already (the engine converted them), so the usual path (build the model, validate it
    again as the response model, then serialise) would only walk up to (row cap) x (columns) cells twice more.
    ``response_model=QueryResponse`` on the routes still documents the shape.
    """
    body = {
        "columns": [{"name": c.name, "type": c.type} for c in result.columns],
        "rows": result.rows,
        "truncated": result.truncated,
        "elapsed_ms": result.elapsed_ms,
    }
    return Response(content=to_json(body), media_type="application/json")


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
) -> Response:
    """The first rows of a table; ``{table}`` is ``<dataset>.<table>``: ``/datasets/bronze/shop.orders/preview``."""
    return _response(await DataService(engine, principal.tenant).preview(layer, table, limit))


@router.post("/query", response_model=QueryResponse)
async def run_query(body: QueryRequest, principal: PrincipalDep, engine: LakeEngineDep) -> Response:
    """Run one guarded read-only query over the organization's lake (tables as ``<layer>.<dataset>.<table>``)."""
    return _response(await DataService(engine, principal.tenant).query(body.sql, body.limit))
