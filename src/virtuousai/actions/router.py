"""``/actions`` (the catalog), ``/action-runs`` (create, read, list, cancel, approve, reject, events) and
``/action-policy`` (which kinds need approval). Roles: viewer reads; member creates and cancels; admin decides
approvals and changes the policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from virtuousai.actions.models import (
    ActionKindPublic,
    ActionRunCreate,
    ActionRunPublic,
    ApprovalDecision,
    ApprovalPolicyPublic,
    KindApprovalUpdate,
    RetryPolicyPublic,
)
from virtuousai.actions.policy import ApprovalPolicyService
from virtuousai.actions.service import ActionRunService
from virtuousai.api.deps import (
    AdminDep,
    LastEventIdHeader,
    MemberDep,
    PageDep,
    PrincipalDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    resume_after,
)
from virtuousai.api.schemas import Page
from virtuousai.api.sse import event_stream
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRunEvent, RunOrigin
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import Timestamp

router = APIRouter(tags=["actions"])

WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=300, description="Wait up to this many seconds for a terminal state before answering."),
]


def _registry(request: Request) -> KindRegistry:
    registry: KindRegistry = request.app.state.registry
    return registry


def _service(request: Request, session: SessionDep, tenant: TenantContext) -> ActionRunService:
    return ActionRunService(session, tenant, _registry(request))


@router.get("/actions", response_model=list[ActionKindPublic])
async def list_actions(request: Request, principal: PrincipalDep) -> list[ActionKindPublic]:
    """Every action kind: its input and output JSON schemas, risk, default timeout and retry policy."""
    return [
        ActionKindPublic(
            slug=kind.slug,
            description=kind.description,
            risk=kind.risk,
            input_schema=kind.input_schema(),
            output_schema=kind.output_schema(),
            default_timeout_s=kind.default_timeout_s,
            retry=RetryPolicyPublic(**vars(kind.retry)),
        )
        for kind in _registry(request).all()
    ]


@router.post(
    "/action-runs",
    response_model=ActionRunPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ActionRunPublic, "description": "An earlier run with this idempotency key"}},
)
async def create_run(
    body: ActionRunCreate,
    request: Request,
    response: Response,
    principal: MemberDep,
    session: SessionDep,
    settings: SettingsDep,
    wait: WaitQuery = None,
) -> ActionRunPublic:
    """Create a run. With ``?wait=S``, answer once it is terminal or after S seconds, whichever comes first."""
    service = _service(request, session, principal.tenant)
    created = await service.create(
        kind=body.kind,
        inputs=body.inputs,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        timeout_s=body.timeout_s,
        max_attempts=body.max_attempts,
    )
    if not created.created:
        response.status_code = status.HTTP_200_OK
    run = created.run
    if wait:
        run = await service.wait(run.id, wait, poll_interval_s=_stream_poll_s(settings.poll_interval_s))
    return ActionRunPublic.model_validate(run)


@router.get("/action-runs", response_model=Page[ActionRunPublic])
async def list_runs(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    status_filter: Annotated[RunStatus | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    origin: RunOrigin | None = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
) -> Page[ActionRunPublic]:
    """Runs, newest first, filtered by status, kind, origin and creation time (``created_after`` inclusive,
    ``created_before`` exclusive)."""
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed.at(["query", name], "must carry a timezone (e.g. 2030-01-01T00:00:00Z)")
    result = await _service(request, session, principal.tenant).list(
        page,
        status=status_filter,
        kind=kind,
        origin=origin,
        created_after=created_after,
        created_before=created_before,
    )
    return Page(items=[ActionRunPublic.model_validate(r) for r in result.items], next_cursor=result.next_cursor)


@router.get("/action-runs/{run_id}", response_model=ActionRunPublic)
async def get_run(run_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> ActionRunPublic:
    return ActionRunPublic.model_validate(await _service(request, session, principal.tenant).get(run_id))


@router.post("/action-runs/{run_id}/cancel", response_model=ActionRunPublic)
async def cancel_run(run_id: str, request: Request, principal: MemberDep, session: SessionDep) -> ActionRunPublic:
    """Cancel: a run that has not started ends CANCELLED at once; a running one is asked to stop (the response
    shows ``cancel_requested_at``) and is abandoned after the grace period if it does not."""
    return ActionRunPublic.model_validate(await _service(request, session, principal.tenant).cancel(run_id))


@router.post("/action-runs/{run_id}/approve", response_model=ActionRunPublic)
async def approve_run(
    run_id: str, body: ApprovalDecision, request: Request, principal: AdminDep, session: SessionDep
) -> ActionRunPublic:
    """Approve the exact inputs you reviewed: ``inputs_hash`` must match the run's, or the answer is 409."""
    service = _service(request, session, principal.tenant)
    return ActionRunPublic.model_validate(await service.approve(run_id, body.inputs_hash))


@router.post("/action-runs/{run_id}/reject", response_model=ActionRunPublic)
async def reject_run(
    run_id: str, body: ApprovalDecision, request: Request, principal: AdminDep, session: SessionDep
) -> ActionRunPublic:
    service = _service(request, session, principal.tenant)
    return ActionRunPublic.model_validate(await service.reject(run_id, body.inputs_hash, body.reason))


@router.get(
    "/action-runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def stream_events(
    run_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    sessions: SessionmakerDep,
    settings: SettingsDep,
    last_event_id: LastEventIdHeader = None,
) -> EventSourceResponse:
    """The run's transitions (``event: status``) and progress events, in order, each with ``id`` = its ``seq``.
    Reconnect with ``Last-Event-ID`` to resume; the stream ends after the terminal event."""
    after = resume_after(last_event_id)
    await _service(request, session, principal.tenant).get(run_id)  # 404 before the stream starts
    await session.close()
    registry = _registry(request)

    async def read(stream_session: AsyncSession, seen: int) -> tuple[bool, Sequence[ActionRunEvent]]:
        service = ActionRunService(stream_session, principal.tenant, registry)
        return (await service.get(run_id)).status.is_terminal, await service.events_after(run_id, seen)

    return event_stream(sessions, read, after=after, poll_s=_stream_poll_s(settings.poll_interval_s))


def _stream_poll_s(poll_interval_s: float) -> float:
    # Streams and waits re-read the run this often at most (wake-ups usually answer sooner).
    return min(poll_interval_s, 0.25)


@router.get("/action-policy", response_model=ApprovalPolicyPublic)
async def get_policy(request: Request, principal: PrincipalDep, session: SessionDep) -> ApprovalPolicyPublic:
    """Which kinds wait for an admin's approval in this organization."""
    return await ApprovalPolicyService(session, principal.tenant, _registry(request)).describe()


@router.put("/action-policy/{kind}", response_model=ApprovalPolicyPublic)
async def set_kind_policy(
    kind: str, body: KindApprovalUpdate, request: Request, principal: AdminDep, session: SessionDep
) -> ApprovalPolicyPublic:
    """Require approval for a kind (or not); ``null`` returns it to the default (write kinds need approval)."""
    service = ApprovalPolicyService(session, principal.tenant, _registry(request))
    return await service.set_kind(kind, body.requires_approval)
