"""``/api/v1/agents/specs`` and ``/api/v1/agents/runs`` (seeds/002), and ``/api/v1/tools``. Thin: dependencies →
service → response model. Viewers read; members create, approve, reject, cancel and rate.

``{spec_id}`` is an id (``agt_…``) or ``slug:<slug>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

# Mounting this router registers the check that keeps connections named by an agent from being deleted.
import virtuousai.agents.references  # noqa: F401
from virtuousai.agents.models import (
    AgentRunCreate,
    AgentRunDag,
    AgentRunPublic,
    AgentRunStepPublic,
    AgentSpecPublic,
    AgentSpecStatsPublic,
    AgentSpecVersionPublic,
    AgentSpecWrite,
    ApprovalDecision,
    DagEdge,
    DagNode,
    FeedbackPublic,
    FeedbackWrite,
    ToolPublic,
)
from virtuousai.agents.run_repository import AgentRunRepository
from virtuousai.agents.runs import EVENT_ID, AgentRunService, read_stream
from virtuousai.agents.service import AgentSpecService, SpecAtVersion
from virtuousai.agents.states import AgentRunStatus, StepKind, StepStatus
from virtuousai.agents.tables import AgentRun
from virtuousai.agents.tools import TOOLS
from virtuousai.api.deps import (
    LastEventIdHeader,
    MemberDep,
    PageDep,
    PrincipalDep,
    SessionDep,
    SessionmakerDep,
)
from virtuousai.api.schemas import Page
from virtuousai.api.sse import Outgoing, outgoing_stream
from virtuousai.errors import ValidationFailed
from virtuousai.store.tenant import TenantContext

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
    """Runs (delegated ones too), success rate, average duration, crystallizations and feedback."""
    spec, stats = await AgentSpecService(session, principal.tenant).stats(spec_id)
    return AgentSpecStatsPublic(spec_id=spec.id, **stats.__dict__)


@tools_router.get("", response_model=list[ToolPublic])
async def list_tools(principal: PrincipalDep) -> list[ToolPublic]:
    """The tools an agent spec may list, with their category and risk."""
    return [
        ToolPublic(slug=t.slug, category=t.category, risk=t.risk, description=t.description) for t in TOOLS.values()
    ]


# -- runs ----------------------------------------------------------------------------------------------------------

runs_router = APIRouter(prefix="/agents/runs", tags=["agents"])

WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=300, description="Wait up to this many seconds for the run to end or to wait for an approval."),
]


def _runs(request: Request, session: AsyncSession, tenant: TenantContext) -> AgentRunService:
    return AgentRunService(session, tenant, request.app.state.orchestrator, request.app.state.registry)


def _run(run: AgentRun) -> AgentRunPublic:
    return AgentRunPublic.model_validate(run)


@runs_router.post("", response_model=AgentRunPublic, status_code=status.HTTP_201_CREATED)
async def start_run(
    body: AgentRunCreate, request: Request, principal: MemberDep, session: SessionDep, wait: WaitQuery = None
) -> AgentRunPublic:
    """Run an agent (its current version, pinned) on one input. An unknown agent answers 404. With `?wait=S`, the
    answer waits up to S seconds for the run to end or to wait for an approval."""
    service = _runs(request, session, principal.tenant)
    run = await service.start(body.agent, body.input, body.context)
    if wait:
        run = await service.wait(run.id, wait)
    return _run(run)


@runs_router.get("", response_model=Page[AgentRunPublic])
async def list_runs(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    agent: Annotated[str | None, Query(description="Only runs of this agent (id or slug).")] = None,
    run_status: Annotated[AgentRunStatus | None, Query(alias="status")] = None,
    parent_run_id: Annotated[str | None, Query(description="Only the runs this run delegated to.")] = None,
) -> Page[AgentRunPublic]:
    """Newest first."""
    result = await _runs(request, session, principal.tenant).list(
        page, agent=agent, status=run_status, parent_run_id=parent_run_id
    )
    return Page(items=[_run(run) for run in result.items], next_cursor=result.next_cursor)


@runs_router.get("/{run_id}", response_model=AgentRunPublic)
async def get_run(
    run_id: str, request: Request, principal: PrincipalDep, session: SessionDep, wait: WaitQuery = None
) -> AgentRunPublic:
    """Status, reason, output, cost, tokens, counts, timings, and the tool calls waiting for a human."""
    service = _runs(request, session, principal.tenant)
    return _run(await (service.wait(run_id, wait) if wait else service.get(run_id)))


@runs_router.get("/{run_id}/steps", response_model=list[AgentRunStepPublic])
async def list_steps(run_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> list[Any]:
    """Every model call, tool call and delegation, in the order they were made, with their parents."""
    steps = await _runs(request, session, principal.tenant).steps(run_id)
    return [AgentRunStepPublic.model_validate(step) for step in steps]


@runs_router.get("/{run_id}/dag", response_model=AgentRunDag)
async def get_dag(run_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> AgentRunDag:
    """The steps as a graph: an edge from the model call that asked for a tool call to it, and from each tool
    result to the model call that saw it. `mermaid` draws the same graph."""
    dag = await _runs(request, session, principal.tenant).dag(run_id)
    return AgentRunDag(
        run_id=run_id,
        nodes=[
            DagNode(
                id=step.id,
                position=step.position,
                kind=StepKind(step.kind),
                status=StepStatus(step.status),
                tool=step.tool,
                action_run_id=step.action_run_id,
                child_run_id=step.child_run_id,
            )
            for step in dag.steps
        ],
        edges=[DagEdge(source=source, target=target) for source, target in dag.edges],
        mermaid=dag.mermaid(),
    )


@runs_router.get(
    "/{run_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def stream_run_events(
    run_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    sessions: SessionmakerDep,
    last_event_id: LastEventIdHeader = None,
) -> EventSourceResponse:
    """`run_started`, `step_started`, `step_completed`, `approval_required`, `approval_decided`, `narration` (the
    model's text as it streams), then `run_completed`, `run_failed` or `run_cancelled`, after which the stream
    ends. Resume with `Last-Event-ID`."""
    after = (last_event_id or "0").strip()
    if not EVENT_ID.match(after):
        raise ValidationFailed.at(["header", "last-event-id"], "must be the id of an event of this stream")
    await _runs(request, session, principal.tenant).get(run_id)  # 404 before the stream starts
    await session.close()

    async def read(stream_session: AsyncSession, seen: str) -> tuple[bool, Sequence[Outgoing]]:
        done, events = await read_stream(AgentRunRepository(stream_session, principal.tenant), run_id, seen)
        payloads = [Outgoing(e.id, e.kind, {"seq": e.seq, "kind": e.kind, "data": e.data, "at": e.at}) for e in events]
        return done, payloads

    return outgoing_stream(sessions, read, after=after)


@runs_router.post("/{run_id}/approve", response_model=AgentRunPublic)
async def approve_run(
    run_id: str, request: Request, principal: MemberDep, session: SessionDep, body: ApprovalDecision | None = None
) -> AgentRunPublic:
    """Approve the waiting tool call (`step_id`, or the only one): it runs with exactly the arguments shown, and
    the run goes on. Nothing waiting, already decided, or two waiting without a `step_id`: 409."""
    decision = body or ApprovalDecision()
    return _run(await _runs(request, session, principal.tenant).approve(run_id, decision.step_id))


@runs_router.post("/{run_id}/reject", response_model=AgentRunPublic)
async def reject_run(
    run_id: str, request: Request, principal: MemberDep, session: SessionDep, body: ApprovalDecision | None = None
) -> AgentRunPublic:
    """Reject the waiting tool call: it never runs, and the run ends CANCELLED `rejected` (unless its spec says
    `on_reject: continue`: then the model is told and goes on)."""
    decision = body or ApprovalDecision()
    service = _runs(request, session, principal.tenant)
    return _run(await service.reject(run_id, decision.step_id, decision.reason))


@runs_router.post("/{run_id}/cancel", response_model=AgentRunPublic)
async def cancel_run(run_id: str, request: Request, principal: MemberDep, session: SessionDep) -> AgentRunPublic:
    """CANCELLED at once; its tool calls and delegated runs are asked to stop. A finished run answers 409."""
    return _run(await _runs(request, session, principal.tenant).cancel(run_id))


@runs_router.post("/{run_id}/feedback", response_model=FeedbackPublic)
async def rate_run(
    run_id: str, body: FeedbackWrite, request: Request, principal: MemberDep, session: SessionDep
) -> FeedbackPublic:
    """Thumbs up or down (one per user and run; sending again replaces it)."""
    feedback = await _runs(request, session, principal.tenant).rate(run_id, body.rating, body.comment)
    return FeedbackPublic.model_validate(feedback)
