"""``/api/v1/automations``: CRUD with immutable versions, the spec's JSON schema, the DAG as Mermaid text;
``/api/v1/automation-runs``: start, read (per-step state), list, cancel, retry, events (SSE); and
``POST /api/v1/templates/{ref}/instantiate``, which starts an automation run for a kind=automation template (and an
ActionRun for a kind=action one), so the templates primitive needs to know nothing about automations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from virtuousai.actions.models import ActionRunPublic
from virtuousai.api.deps import (
    LastEventIdHeader,
    MemberDep,
    PageDep,
    PrincipalDep,
    RegistryDep,
    SessionDep,
    SessionmakerDep,
    resume_after,
)
from virtuousai.api.schemas import Page
from virtuousai.api.sse import event_stream
from virtuousai.automations.from_template import AutomationTemplateService
from virtuousai.automations.graph import mermaid
from virtuousai.automations.models import (
    AutomationPublic,
    AutomationRunCreate,
    AutomationRunPublic,
    AutomationTemplateInstantiation,
    AutomationVersionPublic,
)
from virtuousai.automations.runs import AutomationRunService
from virtuousai.automations.service import AutomationService
from virtuousai.automations.spec import AutomationSpec, spec_json_schema
from virtuousai.automations.states import AutomationRunStatus
from virtuousai.automations.tables import AutomationRunEvent
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.models import TemplateInstantiate, TemplateInstantiation
from virtuousai.templates.service import TemplateService
from virtuousai.templates.tables import TemplateKind

router = APIRouter(prefix="/automations", tags=["automations"])

RefPath = Annotated[str, Path(description="An id (`aut_…`) or `slug:<slug>`.")]


@router.get("/schema", response_model=dict[str, Any])
async def automation_schema() -> dict[str, Any]:
    """The JSON schema of an automation spec (what `POST /automations` and `vai automation apply` accept)."""
    return spec_json_schema()


@router.get("", response_model=Page[AutomationPublic])
async def list_automations(principal: PrincipalDep, session: SessionDep, page: PageDep) -> Page[AutomationPublic]:
    result = await AutomationService(session, principal.tenant).list(page)
    return Page(items=[AutomationPublic.of(item) for item in result.items], next_cursor=result.next_cursor)


@router.post("", response_model=AutomationPublic, status_code=status.HTTP_201_CREATED)
async def create_automation(body: AutomationSpec, principal: MemberDep, session: SessionDep) -> AutomationPublic:
    """Create an automation (version 1). Every problem of the spec is a 422 with its field path; nothing is stored."""
    return AutomationPublic.of(await AutomationService(session, principal.tenant).create(body))


@router.get("/{ref}", response_model=AutomationPublic)
async def get_automation(ref: RefPath, principal: PrincipalDep, session: SessionDep) -> AutomationPublic:
    return AutomationPublic.of(await AutomationService(session, principal.tenant).get(ref))


@router.put("/{ref}", response_model=AutomationPublic)
async def update_automation(
    ref: RefPath, body: AutomationSpec, principal: MemberDep, session: SessionDep
) -> AutomationPublic:
    """Replace the spec: a new version (runs already started keep theirs). An identical spec changes nothing."""
    applied = await AutomationService(session, principal.tenant).update(ref, body)
    return AutomationPublic.of(applied.result)


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_automation(ref: RefPath, principal: MemberDep, session: SessionDep) -> Response:
    await AutomationService(session, principal.tenant).delete(ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{ref}/versions", response_model=Page[AutomationVersionPublic])
async def list_versions(
    ref: RefPath, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[AutomationVersionPublic]:
    result = await AutomationService(session, principal.tenant).list_versions(ref, page)
    return Page(items=[AutomationVersionPublic.of(v) for v in result.items], next_cursor=result.next_cursor)


@router.get("/{ref}/versions/{version}", response_model=AutomationVersionPublic)
async def get_version(
    ref: RefPath,
    version: Annotated[str, Path(description="A version number (`1`, `2`, …) or a version id (`autv_…`).")],
    principal: PrincipalDep,
    session: SessionDep,
) -> AutomationVersionPublic:
    found = await AutomationService(session, principal.tenant).get_version(ref, version)
    return AutomationVersionPublic.of(found.version)


@router.get(
    "/{ref}/graph",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "A Mermaid flowchart of the steps."}},
)
async def automation_graph(
    ref: RefPath,
    principal: PrincipalDep,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, description="Default: the current version.")] = None,
) -> PlainTextResponse:
    """The DAG as Mermaid text (`flowchart TD`): an edge per dependency, declared or inferred from expressions."""
    service = AutomationService(session, principal.tenant)
    found = await (service.get(ref) if version is None else service.get_version(ref, str(version)))
    return PlainTextResponse(mermaid(found.spec))


# -- runs ---------------------------------------------------------------------------------------------------------

runs_router = APIRouter(tags=["automations"])


def _runs(request: Request, session: AsyncSession, tenant: TenantContext) -> AutomationRunService:
    return AutomationRunService(session, tenant, request.app.state.orchestrator)


@runs_router.post("/automations/{ref}/runs", response_model=AutomationRunPublic, status_code=status.HTTP_201_CREATED)
async def start_run(
    ref: RefPath, body: AutomationRunCreate, request: Request, principal: MemberDep, session: SessionDep
) -> AutomationRunPublic:
    """Start a run of the current version. `params` must fit the automation's `parameters` schema (else 422)."""
    service = _runs(request, session, principal.tenant)
    run = await service.start(ref, body.params)
    return AutomationRunPublic.of(run, await service.detail(run.id))


@runs_router.get("/automation-runs", response_model=Page[AutomationRunPublic])
async def list_runs(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    automation: Annotated[str | None, Query(description="Only runs of this automation (id or `slug:<slug>`).")] = None,
    run_status: Annotated[AutomationRunStatus | None, Query(alias="status")] = None,
) -> Page[AutomationRunPublic]:
    """Runs, each with its steps counted by status (`step_counts`); `GET …/{id}` gives the steps."""
    service = _runs(request, session, principal.tenant)
    result = await service.list(page, automation_ref=automation, status=run_status)
    counts = await service.step_counts([run.id for run in result.items])
    items = [AutomationRunPublic.of(run, step_counts=counts[run.id]) for run in result.items]
    return Page(items=items, next_cursor=result.next_cursor)


@runs_router.get("/automation-runs/{run_id}", response_model=AutomationRunPublic)
async def get_run(run_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> AutomationRunPublic:
    """The run with each step's status, output, error, attempts, timings and ActionRuns."""
    detail = await _runs(request, session, principal.tenant).detail(run_id)
    return AutomationRunPublic.of(detail.run, detail)


@runs_router.post("/automation-runs/{run_id}/cancel", response_model=AutomationRunPublic)
async def cancel_run(run_id: str, request: Request, principal: MemberDep, session: SessionDep) -> AutomationRunPublic:
    """CANCELLED at once; its running steps' ActionRuns are asked to stop. A finished run answers 409."""
    service = _runs(request, session, principal.tenant)
    await service.cancel(run_id)
    detail = await service.detail(run_id)
    return AutomationRunPublic.of(detail.run, detail)


@runs_router.post(
    "/automation-runs/{run_id}/retry", response_model=AutomationRunPublic, status_code=status.HTTP_201_CREATED
)
async def retry_run(run_id: str, request: Request, principal: MemberDep, session: SessionDep) -> AutomationRunPublic:
    """A new run (`retry_of`) that reuses the completed steps' outputs and re-executes the failed steps and those
    skipped or cancelled because of them."""
    service = _runs(request, session, principal.tenant)
    run = await service.retry(run_id)
    return AutomationRunPublic.of(run, await service.detail(run.id))


@runs_router.get(
    "/automation-runs/{run_id}/events",
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
    """Run and step transitions (`event: run` / `event: step`), in order, `id` = `seq`. Resume with
    `Last-Event-ID`; the stream ends after the run's terminal event."""
    after = resume_after(last_event_id)
    await _runs(request, session, principal.tenant).get(run_id)  # 404 before the stream starts
    await session.close()

    async def read(stream_session: AsyncSession, seen: int) -> tuple[bool, Sequence[AutomationRunEvent]]:
        service = _runs(request, stream_session, principal.tenant)
        return (await service.get(run_id)).status.is_terminal, await service.events_after(run_id, seen)

    return event_stream(sessions, read, after=after)


# -- instantiating templates (an action template's ActionRun, or an automation template's run) ---------------------

templates_router = APIRouter(prefix="/templates", tags=["templates"])


@templates_router.post(
    "/{ref}/instantiate",
    response_model=TemplateInstantiation | AutomationTemplateInstantiation,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": TemplateInstantiation, "description": "An earlier run with this idempotency key"}},
)
async def instantiate_template(
    ref: str,
    body: TemplateInstantiate,
    request: Request,
    response: Response,
    principal: MemberDep,
    session: SessionDep,
    registry: RegistryDep,
) -> TemplateInstantiation | AutomationTemplateInstantiation:
    """Validate ``params``, render the body and start what the template describes, carrying the snapshot:
    kind=action an ActionRun; kind=automation a run of the automation made (or reused) from the rendered spec."""
    service = TemplateService(session, principal.tenant, registry)
    if (await service.get_by_ref(ref)).kind is TemplateKind.automation:
        orchestrator = request.app.state.orchestrator
        started = await AutomationTemplateService(session, principal.tenant, orchestrator, registry).instantiate(
            ref, body
        )
        detail = await AutomationRunService(session, principal.tenant, orchestrator).detail(started.run.id)
        return AutomationTemplateInstantiation(
            snapshot=started.snapshot,
            automation=AutomationPublic.of(started.automation),
            automation_outcome=started.automation_outcome,
            automation_run=AutomationRunPublic.of(detail.run, detail),
        )
    result = await service.instantiate(ref, body)
    if not result.created.created:
        response.status_code = status.HTTP_200_OK
    return TemplateInstantiation(
        snapshot=result.snapshot,
        run=ActionRunPublic.model_validate(result.created.run),
        created=result.created.created,
    )
