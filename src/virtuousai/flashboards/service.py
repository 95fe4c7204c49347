"""Flashboards: tile validation against the lake, immutable versions, running tiles, and the refresh cache.

One function checks what a flashboard holds, for the API and the ``create_flashboard`` kind alike
(``FlashboardService.create`` / ``update``): each tile's SQL passes the guard and runs through the lake engine with
LIMIT 0 (so the organization's tables and the SQL's columns are known without reading rows), and a chart tile's
Vega-Lite fields must be among those columns. Any error is a 422 with the tile's path, and nothing is stored.

Content (title, description, tiles with their columns) is versioned like a template's: new content writes a new
``FlashboardVersion`` and moves ``current_version``; the same content again changes nothing. Running the tiles
(``data``, ``refresh``) is concurrent, each tile through the guard and the engine with its own deadline, and a
tile's failure is that tile's ``error``, never the whole answer's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.data.engine import LakeQueryEngine
from virtuousai.data.guard import guard_sql
from virtuousai.data.models import ColumnPublic
from virtuousai.errors import PROBLEM_TYPE_BASE, FieldError, NotFound, VaiError, ValidationFailed
from virtuousai.flashboards.charts import chart_errors, with_rows
from virtuousai.flashboards.models import FlashboardCreate, FlashboardData, TileData, TileError, TileIn, TileOut
from virtuousai.flashboards.repository import (
    FlashboardCacheRepository,
    FlashboardRepository,
    FlashboardVersionRepository,
)
from virtuousai.flashboards.tables import Flashboard, FlashboardCache, FlashboardVersion
from virtuousai.ids import new_id
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

Loc = tuple[str | int, ...]


class TileHasNoChart(NotFound):
    type_slug, title = "tile-has-no-chart", "Tile has no chart"


def content_hash(title: str, description: str, tiles: Sequence[TileOut]) -> str:
    doc = {"title": title, "description": description, "tiles": [t.model_dump(mode="json") for t in tiles]}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cron_errors(expression: str | None, loc: Loc) -> list[FieldError]:
    if expression is None:
        return []
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        return [FieldError([*loc, "refresh_cron"], "not a five-field cron expression (e.g. */15 * * * *)")]
    return []


def _summary(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])


def _tile_error(exc: VaiError) -> TileError:
    return TileError(type=PROBLEM_TYPE_BASE + exc.type_slug, title=exc.title, status=exc.status, detail=exc.detail)


async def run_tile(engine: LakeQueryEngine, tenant_id: str, index: int, tile: TileOut, row_cap: int) -> TileData:
    """One tile's rows now (a number tile: its first row), or its error."""
    data = TileData(
        index=index, title=tile.title, type=tile.type, columns=tile.columns, rows=[], truncated=False, elapsed_ms=0.0
    )
    try:
        guarded = guard_sql(tile.sql, loc=("tiles", index, "sql"))
        result = await engine.run_async(tenant_id, guarded, limit=1 if tile.type == "number" else row_cap)
    except VaiError as exc:
        data.error = _tile_error(exc)
        return data
    data.columns = [ColumnPublic(name=c.name, type=c.type) for c in result.columns]
    data.rows, data.truncated, data.elapsed_ms = result.rows, result.truncated, result.elapsed_ms
    return data


async def run_tiles(
    engine: LakeQueryEngine, tenant_id: str, tiles: Sequence[TileOut], row_cap: int
) -> tuple[list[TileData], float]:
    """Every tile at once (as many at a time as the organization's share of query processes allows), and the wall
    time in ms."""
    started = time.perf_counter()
    results = await asyncio.gather(*(run_tile(engine, tenant_id, i, t, row_cap) for i, t in enumerate(tiles)))
    return list(results), (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class Saved:
    flashboard: Flashboard
    version: FlashboardVersion


class FlashboardService:
    def __init__(
        self, session: AsyncSession, tenant: TenantContext, engine: LakeQueryEngine, *, tile_row_cap: int
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.engine = engine
        self.tile_row_cap = tile_row_cap
        self.flashboards = FlashboardRepository(session, tenant)
        self.versions = FlashboardVersionRepository(session, tenant)
        self.caches = FlashboardCacheRepository(session, tenant)

    # ---- reads ------------------------------------------------------------------------------------------------

    async def list_flashboards(self, page: PageRequest) -> PageResult[Flashboard]:
        return await self.flashboards.paginate(self.flashboards.base_query(), page)

    async def get(self, flashboard_id: str) -> Flashboard:
        found = await self.flashboards.get(flashboard_id)
        if found is None:
            raise NotFound(f"flashboard {flashboard_id!r} not found")
        return found

    async def version_of(self, flashboard: Flashboard) -> FlashboardVersion:
        found = await self.versions.get_version(flashboard.id, flashboard.current_version)
        if found is None:
            raise NotFound(f"flashboard {flashboard.id} has no version {flashboard.current_version}")
        return found

    async def get_saved(self, flashboard_id: str) -> Saved:
        flashboard = await self.get(flashboard_id)
        return Saved(flashboard, await self.version_of(flashboard))

    async def list_versions(self, flashboard_id: str, page: PageRequest) -> PageResult[FlashboardVersion]:
        flashboard = await self.get(flashboard_id)
        return await self.versions.paginate(self.versions.of_flashboard(flashboard.id), page)

    # ---- writes -----------------------------------------------------------------------------------------------

    async def check(self, body: FlashboardCreate, loc: Loc = ("body",)) -> list[TileOut]:
        """Every tile checked against the lake (guard, LIMIT 0 run, chart fields), with its columns; or one 422
        naming every bad field by its path (``[*loc, "tiles", 2, "chart", "encoding", "y", "field"]``)."""
        errors = cron_errors(body.refresh_cron, loc)
        results = await asyncio.gather(
            *(self._check_tile(tile, [*loc, "tiles", i]) for i, tile in enumerate(body.tiles)),
            return_exceptions=True,
        )
        tiles: list[TileOut] = []
        failures: list[ValidationFailed] = []
        for result in results:
            if isinstance(result, ValidationFailed):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result  # busy query processes (503) and the unexpected: not the input's fault
            else:
                tiles.append(result)
        if len(failures) == 1 and not errors:
            raise failures[0]  # keeps its own type: sql-rejected, unknown-table, query-failed …
        errors += [error for failure in failures for error in failure.errors]
        if errors:
            raise ValidationFailed(_summary(errors), errors=errors)
        return tiles

    async def _check_tile(self, tile: TileIn, loc: list[str | int]) -> TileOut:
        name = f"tile {loc[-1]} ({tile.title!r})"
        if tile.type == "chart" and tile.chart is None:
            raise ValidationFailed.at([*loc, "chart"], f"{name}: a chart tile needs a Vega-Lite spec")
        if tile.type != "chart" and tile.chart is not None:
            raise ValidationFailed.at([*loc, "chart"], f"{name}: only chart tiles have a chart (this is {tile.type})")
        guarded = guard_sql(tile.sql, loc=(*loc, "sql"))
        columns = await self.engine.columns_async(self.tenant.tenant_id, guarded)
        if tile.chart is not None:
            errors = chart_errors(tile.chart, [c.name for c in columns], [*loc, "chart"])
            if errors:
                for error in errors:
                    error["msg"] = f"{name}: {error['msg']}"
                raise ValidationFailed(_summary(errors), errors=errors)
        return TileOut(**tile.model_dump(), columns=[ColumnPublic(name=c.name, type=c.type) for c in columns])

    async def create(
        self,
        body: FlashboardCreate,
        *,
        agent_run_id: str | None = None,
        loc: Loc = ("body",),
        flashboard_id: str | None = None,
    ) -> Saved:
        """Check and store a new flashboard (``flashboard_id``: the id a kind derives from its run)."""
        tiles = await self.check(body, loc)
        flashboard = Flashboard(
            id=flashboard_id or new_id("fb"),
            title=body.title,
            description=body.description,
            current_version=1,
            refresh_cron=body.refresh_cron,
            refreshed_tick=utcnow() if body.refresh_cron else None,
            agent_run_id=agent_run_id,
        )
        self.flashboards.add(flashboard)
        version = self._new_version(flashboard, body, tiles, agent_run_id)
        await self.session.commit()
        return Saved(flashboard, version)

    async def update(
        self,
        flashboard_id: str,
        body: FlashboardCreate,
        *,
        agent_run_id: str | None = None,
        loc: Loc = ("body",),
    ) -> Saved:
        """Replace the flashboard's content: a new version when it differs from the current one."""
        flashboard = await self.get(flashboard_id)
        current = await self.version_of(flashboard)
        tiles = await self.check(body, loc)
        if body.refresh_cron != flashboard.refresh_cron:
            flashboard.refresh_cron = body.refresh_cron
            flashboard.refreshed_tick = utcnow() if body.refresh_cron else None  # no catch-up of older ticks
        version = current
        if content_hash(body.title, body.description, tiles) != current.content_hash:
            flashboard.current_version = current.version + 1
            flashboard.title, flashboard.description = body.title, body.description
            version = self._new_version(flashboard, body, tiles, agent_run_id)
        flashboard.updated_at = utcnow()
        await self.session.commit()
        return Saved(flashboard, version)

    async def delete(self, flashboard_id: str) -> None:
        flashboard = await self.get(flashboard_id)
        for table in (FlashboardCache, FlashboardVersion):
            await self.session.execute(
                sa.delete(table).where(table.tenant_id == self.tenant.tenant_id, table.flashboard_id == flashboard.id)
            )
        await self.flashboards.delete(flashboard)
        await self.session.commit()

    def _new_version(
        self, flashboard: Flashboard, body: FlashboardCreate, tiles: list[TileOut], agent_run_id: str | None
    ) -> FlashboardVersion:
        version = FlashboardVersion(
            id=new_id("fbv"),
            flashboard_id=flashboard.id,
            version=flashboard.current_version,
            title=body.title,
            description=body.description,
            tiles=[t.model_dump(mode="json") for t in tiles],
            content_hash=content_hash(body.title, body.description, tiles),
            agent_run_id=agent_run_id,
            created_by=self.tenant.user_id,
        )
        self.versions.add(version)
        return version

    # ---- tiles' data ------------------------------------------------------------------------------------------

    async def data(self, flashboard_id: str, *, cached: bool = False) -> FlashboardData:
        """Every tile's rows, run now; ``cached``: the last refresh's rows when they are of the current version
        (else run now: ``source`` says which)."""
        saved = await self.get_saved(flashboard_id)
        if cached:
            cache = await self.caches.of_flashboard(saved.flashboard.id)
            if cache is not None and cache.version == saved.version.version:
                return FlashboardData(
                    flashboard_id=saved.flashboard.id,
                    version=cache.version,
                    source="cache",
                    refreshed_at=cache.refreshed_at,
                    elapsed_ms=0.0,
                    tiles=[TileData.model_validate(t) for t in cache.tiles],
                )
        return await self._live(saved)

    async def refresh(self, flashboard_id: str) -> FlashboardData:
        """Run every tile now and keep the rows as the flashboard's cache."""
        saved = await self.get_saved(flashboard_id)
        live = await self._live(saved)
        refreshed_at = await self._store_cache(saved, live.tiles)
        return live.model_copy(update={"refreshed_at": refreshed_at})

    async def chart_spec(self, flashboard_id: str, index: int, *, cached: bool = False) -> dict[str, Any]:
        """A chart tile's spec with its rows inlined (a table or number tile has none: 404 tile-has-no-chart)."""
        saved = await self.get_saved(flashboard_id)
        tiles = self._tiles(saved.version)
        if not 0 <= index < len(tiles):
            raise NotFound(f"flashboard {flashboard_id} has no tile {index} (it has {len(tiles)})")
        tile = tiles[index]
        if tile.type != "chart" or tile.chart is None:
            raise TileHasNoChart(f"tile {index} ({tile.title!r}) is a {tile.type} tile: it has no chart to render")
        data = (await self.data(flashboard_id, cached=True)).tiles[index] if cached else None
        if data is None:
            data = await run_tile(self.engine, self.tenant.tenant_id, index, tile, self.tile_row_cap)
        if data.error is not None:
            raise ValidationFailed.at(["path", "tile"], f"tile {index} ({tile.title!r}): {data.error.detail}")
        return with_rows(tile.chart, [c.name for c in data.columns], data.rows)

    async def _live(self, saved: Saved) -> FlashboardData:
        tiles, elapsed_ms = await run_tiles(
            self.engine, self.tenant.tenant_id, self._tiles(saved.version), self.tile_row_cap
        )
        return FlashboardData(
            flashboard_id=saved.flashboard.id,
            version=saved.version.version,
            source="live",
            refreshed_at=None,
            elapsed_ms=round(elapsed_ms, 3),
            tiles=tiles,
        )

    async def _store_cache(self, saved: Saved, tiles: Sequence[TileData]) -> datetime:
        now = utcnow()
        rows = [t.model_dump(mode="json") for t in tiles]
        flashboard_id, version = saved.flashboard.id, saved.version.version  # read now: a rollback expires them
        cache = await self.caches.of_flashboard(flashboard_id)
        if cache is None:
            self.caches.add(
                FlashboardCache(
                    id=new_id("fbc"), flashboard_id=flashboard_id, version=version, tiles=rows, refreshed_at=now
                )
            )
            try:
                await self.session.commit()
                return now
            except IntegrityError:
                # Another refresh made the flashboard's first cache row since we looked: both ran the tiles just
                # now, so this one's rows replace it (the last refresh wins, as for any later refresh).
                await self.session.rollback()
                cache = await self.caches.of_flashboard(flashboard_id)
                if cache is None:
                    raise
        cache.version, cache.tiles, cache.refreshed_at = version, rows, now
        await self.session.commit()
        return now

    @staticmethod
    def _tiles(version: FlashboardVersion) -> list[TileOut]:
        return [TileOut.model_validate(t) for t in version.tiles]
