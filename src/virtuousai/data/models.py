"""API shapes for the catalog and the query endpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.data.guard import MAX_SQL_LENGTH
from virtuousai.timeutil import Timestamp


class ColumnPublic(BaseModel):
    name: str
    type: str = Field(description="DuckDB type name, as queries see it.")


class TablePublic(BaseModel):
    name: str = Field(
        description="The three-part SQL name: <layer>.<dataset>.<table>.", examples=["bronze.shop.orders"]
    )
    layer: Literal["bronze", "silver", "gold"]
    dataset: str
    table: str
    columns: list[ColumnPublic]
    row_count: int
    file_count: int
    version: int = Field(description="Increases with every published load or transform.")
    last_load_at: Timestamp = Field(description="When the current version was published.")
    last_load_id: str | None = Field(description="dlt load id (extracts) or the run id (transforms).")
    last_run_id: str | None = Field(description="The action run that published the current version.")
    freshness_s: float = Field(description="Seconds since the current version was published.")


class LayerPublic(BaseModel):
    name: Literal["bronze", "silver", "gold"]
    tables: list[TablePublic]


class DatasetCatalog(BaseModel):
    """The organization's lake: every published table, grouped by layer."""

    layers: list[LayerPublic]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_LENGTH,
        description="One read-only DuckDB query over lake tables named <layer>.<dataset>.<table>.",
        examples=["SELECT status, count(*) FROM bronze.shop.orders GROUP BY status"],
    )
    limit: int | None = Field(default=None, ge=1, description="Most rows to return (capped by the server's row cap).")


class QueryResponse(BaseModel):
    columns: list[ColumnPublic]
    rows: list[list[Any]]
    truncated: bool = Field(description="True when the query had more rows than were returned.")
    elapsed_ms: float


class TableDescriptionIn(BaseModel):
    """What the organization writes about one lake table: the table, and any of its columns."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(default="", max_length=4000, description="What the table holds, in a sentence or a few.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="{column: what it means}; every key must be a column of the table."
    )


class TableDescriptionPublic(TableDescriptionIn):
    name: str = Field(description="The three-part SQL name: <layer>.<dataset>.<table>.")
    updated_at: Timestamp | None = Field(description="None: nothing was written yet.")
