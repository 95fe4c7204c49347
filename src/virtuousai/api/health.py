"""Liveness and readiness (no auth)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel

from virtuousai.api.problems import problem_doc
from virtuousai.errors import ServiceUnavailable
from virtuousai.store import migrate

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: problem_doc("Not ready: the database is unreachable or its schema is not current")},
)
async def readyz(request: Request) -> Health:
    """The database answers and its schema is at the newest migration."""
    engine = request.app.state.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        current = await migrate.is_current(engine)
    except Exception as exc:
        raise ServiceUnavailable(f"database unreachable: {type(exc).__name__}") from exc
    if not current:
        raise ServiceUnavailable("database schema is not at the newest migration; run `vai migrate`")
    return Health(status="ready")
