"""API shapes for flashboards, their versions, tiles and the tiles' data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.data.guard import MAX_SQL_LENGTH
from virtuousai.data.models import ColumnPublic
from virtuousai.timeutil import Timestamp

MAX_TILES = 24
TileType = Literal["chart", "table", "number"]


class TileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_LENGTH,
        description="One read-only lake query (guarded like POST /query), e.g. over gold.shop.daily_revenue.",
    )
    type: TileType = Field(
        default="chart",
        description="chart: a Vega-Lite v5 view of the rows; table: the rows; number: the first row's first column.",
    )
    chart: dict[str, Any] | None = Field(
        default=None,
        description="type=chart: a Vega-Lite v5 spec with `mark` and `encoding` and no `data` (the rows are its "
        "data); every encoded `field` must be a column the SQL returns.",
    )


class TileOut(TileIn):
    columns: list[ColumnPublic] = Field(description="The columns the SQL returned when the tile was saved.")


class FlashboardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    tiles: list[TileIn] = Field(default_factory=list, max_length=MAX_TILES)
    refresh_cron: str | None = Field(
        default=None,
        max_length=200,
        description="Five-field cron expression (UTC): rerun and cache every tile on this schedule.",
        examples=["*/15 * * * *"],
    )


class FlashboardUpdate(FlashboardCreate):
    """The whole flashboard, as ``POST`` takes it. New content (title, description, tiles) makes a new version."""


class FlashboardVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    flashboard_id: str
    version: int
    title: str
    description: str
    tiles: list[TileOut]
    content_hash: str = Field(description="sha256 of the canonical JSON of {title, description, tiles}.")
    agent_run_id: str | None = Field(description="The agent run whose create_flashboard call wrote this version.")
    created_by: str | None
    created_at: Timestamp


class FlashboardPublic(BaseModel):
    id: str
    title: str
    description: str
    tiles: list[TileOut]
    current_version: int
    content_hash: str
    refresh_cron: str | None
    agent_run_id: str | None = Field(description="The agent run that created the flashboard, if one did.")
    created_at: Timestamp
    updated_at: Timestamp


class TileError(BaseModel):
    type: str = Field(description="The problem type, as a failed POST /query would answer it.")
    title: str
    status: int
    detail: str


class TileData(BaseModel):
    index: int
    title: str
    type: TileType
    columns: list[ColumnPublic]
    rows: list[list[Any]]
    truncated: bool = Field(description="The query had more rows than the tile row cap.")
    elapsed_ms: float
    error: TileError | None = Field(default=None, description="Why this tile has no rows (the others still do).")


class FlashboardData(BaseModel):
    flashboard_id: str
    version: int
    source: Literal["live", "cache"] = Field(description="live: run now; cache: the last refresh's rows.")
    refreshed_at: Timestamp | None = Field(description="When the cached rows were got (source=cache).")
    elapsed_ms: float = Field(description="Wall time of running every tile (they run concurrently); 0 from cache.")
    tiles: list[TileData]
