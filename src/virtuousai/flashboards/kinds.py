"""``create_flashboard`` (write): create a flashboard, or with ``flashboard_id`` give it a new version.

The kind is the flashboard service's own write, so it checks exactly what ``POST /api/v1/flashboards`` checks (one
function: ``FlashboardService.check``), with errors at ``inputs.…`` paths. Run as an agent's tool call (its
ActionRun's parent is an agent run), the flashboard and the version record that agent run. A retried attempt does
not create a second flashboard: the new flashboard's id is derived from the run's id, so an attempt finds what an
earlier one of the same run created; an update of the same content is no new version anyway.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.config import get_settings
from virtuousai.data.engine import shared_lake_engine
from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.flashboards.models import MAX_TILES, FlashboardCreate, TileIn, TileOut
from virtuousai.flashboards.service import FlashboardService, Saved
from virtuousai.ids import AGENT_RUN_PREFIX, prefix_of
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind

API_PATH = "/api/v1/flashboards/"


class CreateFlashboardInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    tiles: list[TileIn] = Field(min_length=1, max_length=MAX_TILES)
    flashboard_id: str | None = Field(
        default=None, description="Update this flashboard (a new version) instead of creating one."
    )


class CreateFlashboardOutput(BaseModel):
    flashboard_id: str
    version: int
    created: bool = Field(description="False: an existing flashboard got this version (or already had it).")
    tiles: list[TileOut] = Field(description="The tiles as stored, each with the columns its SQL returned.")
    url: str = Field(description="The flashboard's API path; …/data has its rows.")


class FlashboardRejected(Exception):
    """The inputs did not pass the flashboard's checks: the run fails, with the field errors, and is not retried."""

    retryable = False

    def __init__(self, exc: ValidationFailed) -> None:
        super().__init__(exc.detail)
        self.error_type = exc.type_slug
        self.error_details: dict[str, Any] = {"errors": [dict(e) for e in exc.errors]}


def agent_run_of(ctx: ActionContext) -> str | None:
    """The agent run whose tool call this run is (an automation's step has an automation run as parent)."""
    parent = ctx.parent_run_id
    return parent if parent is not None and prefix_of(parent) == AGENT_RUN_PREFIX else None


def flashboard_id_for(run_id: str) -> str:
    """The id of the flashboard a run creates: the same in every attempt."""
    return "fb_" + run_id.partition("_")[2]


@action_kind(
    "create_flashboard",
    risk="write",
    description="Create a flashboard (title, description, tiles of guarded lake SQL with Vega-Lite charts), or "
    "give an existing one a new version.",
    timeout_s=120,
    retry=RetryPolicy(max_attempts=3, backoff_s=1.0),
)
async def create_flashboard(ctx: ActionContext, inputs: CreateFlashboardInput) -> CreateFlashboardOutput:
    settings = get_settings()
    engine = shared_lake_engine(ctx)
    agent_run_id = agent_run_of(ctx)
    async with ctx.session() as session:
        service = FlashboardService(session, ctx.tenant, engine, tile_row_cap=settings.flashboard_tile_row_cap)
        body = FlashboardCreate(title=inputs.title, description=inputs.description, tiles=inputs.tiles)
        try:
            if inputs.flashboard_id is not None:
                existing = await service.flashboards.get(inputs.flashboard_id)
                if existing is None:
                    error = FieldError(["inputs", "flashboard_id"], "no such flashboard in this organization")
                    raise ValidationFailed(f"flashboard {inputs.flashboard_id!r} not found", errors=[error])
                body.refresh_cron = existing.refresh_cron  # the schedule is the flashboard's, not the content's
                saved = await service.update(existing.id, body, agent_run_id=agent_run_id, loc=("inputs",))
                created = False
            else:
                own_id = flashboard_id_for(ctx.run_id)
                earlier = await service.flashboards.get(own_id)
                if earlier is not None:  # an earlier attempt of this run created it
                    saved, created = Saved(earlier, await service.version_of(earlier)), True
                else:
                    saved = await service.create(body, agent_run_id=agent_run_id, loc=("inputs",), flashboard_id=own_id)
                    created = True
        except ValidationFailed as exc:
            raise FlashboardRejected(exc) from None
    return CreateFlashboardOutput(
        flashboard_id=saved.flashboard.id,
        version=saved.version.version,
        created=created,
        tiles=[TileOut.model_validate(t) for t in saved.version.tiles],
        url=API_PATH + saved.flashboard.id,
    )
