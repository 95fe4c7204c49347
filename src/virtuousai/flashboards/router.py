"""``/api/v1/flashboards``: reading (and running tiles, rendering charts) needs viewer; writing needs member."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from virtuousai.api.deps import MemberDep, PageDep, PrincipalDep, SessionDep
from virtuousai.api.problems import problem_doc
from virtuousai.api.schemas import Page
from virtuousai.flashboards.charts import render_png, render_svg
from virtuousai.flashboards.models import (
    FlashboardCreate,
    FlashboardData,
    FlashboardPublic,
    FlashboardUpdate,
    FlashboardVersionPublic,
    TileOut,
)
from virtuousai.flashboards.service import FlashboardService, Saved
from virtuousai.store.tenant import TenantContext

router = APIRouter(prefix="/flashboards", tags=["flashboards"])

CachedQuery = Annotated[
    bool, Query(description="Answer the last refresh's rows when they are of the current version (else run now).")
]
TileIndex = Annotated[int, Path(ge=0, description="The tile's position, from 0.")]
_QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: problem_doc("No query process was free within the query's time limit (`query-busy`); try again")
}


def _service(request: Request, session: SessionDep, tenant: TenantContext) -> FlashboardService:
    return FlashboardService(
        session,
        tenant,
        request.app.state.lake_engine,
        tile_row_cap=request.app.state.settings.flashboard_tile_row_cap,
    )


def public(saved: Saved) -> FlashboardPublic:
    flashboard, version = saved.flashboard, saved.version
    return FlashboardPublic(
        id=flashboard.id,
        title=version.title,
        description=version.description,
        tiles=[TileOut.model_validate(t) for t in version.tiles],
        current_version=flashboard.current_version,
        content_hash=version.content_hash,
        refresh_cron=flashboard.refresh_cron,
        agent_run_id=flashboard.agent_run_id,
        created_at=flashboard.created_at,
        updated_at=flashboard.updated_at,
    )


@router.get("", response_model=Page[FlashboardPublic])
async def list_flashboards(
    request: Request, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[FlashboardPublic]:
    service = _service(request, session, principal.tenant)
    result = await service.list_flashboards(page)
    items = [public(Saved(f, await service.version_of(f))) for f in result.items]
    return Page(items=items, next_cursor=result.next_cursor)


@router.post("", response_model=FlashboardPublic, status_code=status.HTTP_201_CREATED, responses=_QUERY_RESPONSES)
async def create_flashboard(
    body: FlashboardCreate, request: Request, principal: MemberDep, session: SessionDep
) -> FlashboardPublic:
    """Create a flashboard; every tile's SQL is guarded and run with LIMIT 0, and its chart's fields checked."""
    return public(await _service(request, session, principal.tenant).create(body))


@router.get("/{flashboard_id}", response_model=FlashboardPublic)
async def get_flashboard(
    flashboard_id: str, request: Request, principal: PrincipalDep, session: SessionDep
) -> FlashboardPublic:
    return public(await _service(request, session, principal.tenant).get_saved(flashboard_id))


@router.put("/{flashboard_id}", response_model=FlashboardPublic, responses=_QUERY_RESPONSES)
async def update_flashboard(
    flashboard_id: str, body: FlashboardUpdate, request: Request, principal: MemberDep, session: SessionDep
) -> FlashboardPublic:
    """Replace the flashboard. New content (title, description, tiles) is a new version; old ones never change."""
    return public(await _service(request, session, principal.tenant).update(flashboard_id, body))


@router.delete("/{flashboard_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_flashboard(
    flashboard_id: str, request: Request, principal: MemberDep, session: SessionDep
) -> Response:
    """Delete the flashboard, its versions and its cache."""
    await _service(request, session, principal.tenant).delete(flashboard_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{flashboard_id}/versions", response_model=Page[FlashboardVersionPublic])
async def list_flashboard_versions(
    flashboard_id: str, request: Request, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[FlashboardVersionPublic]:
    """Every version, newest first."""
    result = await _service(request, session, principal.tenant).list_versions(flashboard_id, page)
    return Page(items=[FlashboardVersionPublic.model_validate(v) for v in result.items], next_cursor=result.next_cursor)


@router.get("/{flashboard_id}/data", response_model=FlashboardData)
async def flashboard_data(
    flashboard_id: str, request: Request, principal: PrincipalDep, session: SessionDep, cached: CachedQuery = False
) -> FlashboardData:
    """Every tile's rows, run now (concurrently); a tile that fails has its ``error``, the others their rows."""
    return await _service(request, session, principal.tenant).data(flashboard_id, cached=cached)


@router.post("/{flashboard_id}/refresh", response_model=FlashboardData)
async def refresh_flashboard(
    flashboard_id: str, request: Request, principal: MemberDep, session: SessionDep
) -> FlashboardData:
    """Run every tile now and cache the rows (``GET …/data?cached=true`` answers them)."""
    return await _service(request, session, principal.tenant).refresh(flashboard_id)


_SVG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}, "description": "The chart as SVG."}
}
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "The PNG."}
}


@router.get("/{flashboard_id}/tiles/{tile}/chart.svg", response_class=Response, responses={**_SVG, **_QUERY_RESPONSES})
async def tile_chart_svg(
    flashboard_id: str,
    tile: TileIndex,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    cached: CachedQuery = False,
) -> Response:
    """A chart tile rendered on the server with its rows (a table or number tile: 404 ``tile-has-no-chart``)."""
    spec = await _service(request, session, principal.tenant).chart_spec(flashboard_id, tile, cached=cached)
    return Response(content=await asyncio.to_thread(render_svg, spec), media_type="image/svg+xml")


@router.get("/{flashboard_id}/tiles/{tile}/chart.png", response_class=Response, responses={**_PNG, **_QUERY_RESPONSES})
async def tile_chart_png(
    flashboard_id: str,
    tile: TileIndex,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    cached: CachedQuery = False,
) -> Response:
    """The chart as a PNG (twice the spec's size)."""
    spec = await _service(request, session, principal.tenant).chart_spec(flashboard_id, tile, cached=cached)
    return Response(content=await asyncio.to_thread(render_png, spec), media_type="image/png")
