"""``/api/v1/agents/specs`` (seeds/002) and ``/api/v1/tools``. Thin: dependencies → service → response model.

``{spec_id}`` is an id (``agt_…``) or ``slug:<slug>``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

# Mounting this router registers the check that keeps connections named by an agent from being deleted.
import virtuousai.agents.references  # noqa: F401
from virtuousai.agents.models import (
    AgentSpecPublic,
    AgentSpecStatsPublic,
    AgentSpecVersionPublic,
    AgentSpecWrite,
    ToolPublic,
)
from virtuousai.agents.service import AgentSpecService, SpecAtVersion
from virtuousai.agents.tools import TOOLS
from virtuousai.api.deps import MemberDep, PageDep, PrincipalDep, SessionDep
from virtuousai.api.schemas import Page

router = APIRouter(prefix="/agents/specs", tags=["agents"])
tools_router = APIRouter(prefix="/tools", tags=["agents"])


def _public(found: SpecAtVersion) -> AgentSpecPublic:
    version = AgentSpecVersionPublic.model_validate(found.version)
    return AgentSpecPublic(
        **version.model_dump(exclude={"id"}),
        id=found.spec.id,
        version_id=found.version.id,
        updated_at=found.spec.updated_at,
    )


@router.post("", response_model=AgentSpecPublic, status_code=status.HTTP_201_CREATED)
async def create_spec(body: AgentSpecWrite, principal: MemberDep, session: SessionDep) -> AgentSpecPublic:
    """Create an agent from its markdown. Invalid specs answer 422 with each error's field path and line."""
    return _public(await AgentSpecService(session, principal.tenant).create(body.markdown))


@router.get("", response_model=Page[AgentSpecPublic])
async def list_specs(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    mode: Annotated[Literal["primary", "subagent"] | None, Query(description="primary: the agent picker.")] = None,
) -> Page[AgentSpecPublic]:
    result = await AgentSpecService(session, principal.tenant).list(page, mode=mode)
    return Page(items=[_public(found) for found in result.items], next_cursor=result.next_cursor)


@router.get("/{spec_id}", response_model=AgentSpecPublic)
async def get_spec(spec_id: str, principal: PrincipalDep, session: SessionDep) -> AgentSpecPublic:
    """The current version: parsed fields and the markdown exactly as it was submitted."""
    return _public(await AgentSpecService(session, principal.tenant).get(spec_id))


@router.put("/{spec_id}", response_model=AgentSpecPublic)
async def update_spec(spec_id: str, body: AgentSpecWrite, principal: MemberDep, session: SessionDep) -> AgentSpecPublic:
    """A new immutable version under the same spec id (the slug cannot change)."""
    return _public(await AgentSpecService(session, principal.tenant).update(spec_id, body.markdown))


@router.get("/{spec_id}/versions", response_model=Page[AgentSpecVersionPublic])
async def list_spec_versions(
    spec_id: str, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[AgentSpecVersionPublic]:
    """Every version, newest first."""
    result = await AgentSpecService(session, principal.tenant).list_versions(spec_id, page)
    return Page(items=[AgentSpecVersionPublic.model_validate(v) for v in result.items], next_cursor=result.next_cursor)


@router.delete("/{spec_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_spec(spec_id: str, principal: MemberDep, session: SessionDep) -> Response:
    """Refused with 409 while another agent lists this one in its sub_agents."""
    await AgentSpecService(session, principal.tenant).delete(spec_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{spec_id}/stats", response_model=AgentSpecStatsPublic)
async def get_spec_stats(spec_id: str, principal: PrincipalDep, session: SessionDep) -> AgentSpecStatsPublic:
    """Runs, success rate, average duration, crystallizations and feedback (zeros until agent runs exist)."""
    spec, stats = await AgentSpecService(session, principal.tenant).stats(spec_id)
    return AgentSpecStatsPublic(spec_id=spec.id, **stats.__dict__)


@tools_router.get("", response_model=list[ToolPublic])
async def list_tools(principal: PrincipalDep) -> list[ToolPublic]:
    """The tools an agent spec may list, with their category and risk."""
    return [
        ToolPublic(slug=t.slug, category=t.category, risk=t.risk, description=t.description) for t in TOOLS.values()
    ]
