"""``/datasets`` (the catalog and previews) and ``/query`` (guarded SQL over the organization's lake)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic_core import to_json

from virtuousai.api.deps import MemberDep, PrincipalDep, SessionDep
from virtuousai.api.problems import problem_doc
from virtuousai.data.descriptions import TableDescriptions
from virtuousai.data.engine import LakeQueryEngine, QueryResult
from virtuousai.data.models import (
    DatasetCatalog,
    QueryRequest,
    QueryResponse,
    TableDescriptionIn,
    TableDescriptionPublic,
)
from virtuousai.data.service import DataService

router = APIRouter(tags=["data"])


async def get_lake_engine(request: Request) -> LakeQueryEngine:
    """The app's one engine (built in the lifespan; it owns the query processes).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    per request for what is an attribute lookup.
    """
    engine: LakeQueryEngine = request.app.state.lake_engine
    return engine


LakeEngineDep = Annotated[LakeQueryEngine, Depends(get_lake_engine)]


def _response(result: QueryResult) -> Response:
    """A ``QueryResponse``, put together here from the rows' JSON as the query process wrote it.

    The usual path (decode the rows, build the model, validate it again as the response model, serialise) would
    walk up to (row cap) x (columns) cells three more times. ``response_model=QueryResponse`` on the routes still
    documents the shape.
    """
    columns = to_json([{"name": c.name, "type": c.type} for c in result.columns])
    content = b'{"columns":%b,"rows":%b,"truncated":%b,"elapsed_ms":%b}' % (
        columns,
        result.rows_json,
        to_json(result.truncated),
        to_json(result.elapsed_ms),
    )
    return Response(content=content, media_type="application/json")


# A lake query may also answer 503 `query-busy` (no query process free within its time limit).
_QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: problem_doc("No query process was free within the query's time limit (`query-busy`); try again")
}


@router.get("/datasets", response_model=DatasetCatalog)
async def list_datasets(principal: PrincipalDep, engine: LakeEngineDep) -> DatasetCatalog:
    """Every published table by layer: columns with types, row counts, last load and freshness."""
    return await DataService(engine, principal.tenant).catalog()


@router.get("/datasets/{layer}/{table}/preview", response_model=QueryResponse, responses=_QUERY_RESPONSES)
async def preview_table(
    layer: str,
    table: str,
    principal: PrincipalDep,
    engine: LakeEngineDep,
    limit: Annotated[int | None, Query(ge=1, description="Most rows (capped by the server's row cap).")] = 100,
) -> Response:
    """The first rows of a table; ``{table}`` is ``<dataset>.<table>``: ``/datasets/bronze/shop.orders/preview``."""
    return _response(await DataService(engine, principal.tenant).preview(layer, table, limit))


@router.get("/datasets/{layer}/{table}/description", response_model=TableDescriptionPublic)
async def get_table_description(
    layer: str, table: str, principal: PrincipalDep, engine: LakeEngineDep, session: SessionDep
) -> TableDescriptionPublic:
    """What the organization wrote about a table and its columns (``explain_schema`` gives it to agents)."""
    return await TableDescriptions(session, principal.tenant).describe(
        engine.lake(principal.tenant.tenant_id), DataService.table_ref(layer, table)
    )


@router.put("/datasets/{layer}/{table}/description", response_model=TableDescriptionPublic)
async def put_table_description(
    layer: str,
    table: str,
    body: TableDescriptionIn,
    principal: MemberDep,
    engine: LakeEngineDep,
    session: SessionDep,
) -> TableDescriptionPublic:
    """Replace the description of a table (``{table}`` is ``<dataset>.<table>``) and of any of its columns."""
    described = await TableDescriptions(session, principal.tenant).put(
        engine.lake(principal.tenant.tenant_id), DataService.table_ref(layer, table), body, user_id=principal.user.id
    )
    await session.commit()
    return described


@router.post("/query", response_model=QueryResponse, responses=_QUERY_RESPONSES)
async def run_query(body: QueryRequest, principal: PrincipalDep, engine: LakeEngineDep) -> Response:
    """Run one guarded read-only query over the organization's lake (tables as ``<layer>.<dataset>.<table>``)."""
    return _response(await DataService(engine, principal.tenant).query(body.sql, body.limit))
