"""``/api/v1/templates``. ``{ref}`` is an id or ``slug:<slug>``.

Reading needs viewer; creating, updating, deleting and instantiating need member.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from virtuousai.actions.models import ActionRunPublic
from virtuousai.actions.registry import KindRegistry, load_registry
from virtuousai.api.deps import MemberDep, PageDep, PrincipalDep, SessionDep, SessionmakerDep
from virtuousai.api.schemas import Page
from virtuousai.automations.from_template import AutomationTemplateService
from virtuousai.automations.models import AutomationPublic, AutomationRunPublic, AutomationTemplateInstantiation
from virtuousai.automations.runs import AutomationRunService
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.models import (
    TemplateCreate,
    TemplateInstantiate,
    TemplateInstantiation,
    TemplatePublic,
    TemplateUpdate,
    TemplateVersionPublic,
)
from virtuousai.templates.service import TemplateService
from virtuousai.templates.tables import Template, TemplateKind, TemplateVersion

router = APIRouter(prefix="/templates", tags=["templates"])


def _service(request: Request, session: SessionDep, tenant: TenantContext) -> TemplateService:
    # The same kinds the action-runs API knows: the running runtime's registry, else the configured modules.
    runtime = getattr(request.app.state, "runtime", None)
    registry: KindRegistry = (
        runtime.registry if runtime is not None else load_registry(request.app.state.settings.kind_modules)
    )
    return TemplateService(session, tenant, registry)


def _public(template: Template, version: TemplateVersion) -> TemplatePublic:
    return TemplatePublic(
        id=template.id,
        kind=template.kind,
        name=template.name,
        slug=template.slug,
        description=template.description,
        current_version=template.current_version,
        content_hash=version.content_hash,
        parameters=version.parameters,
        body=version.body,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


@router.get("", response_model=Page[TemplatePublic])
async def list_templates(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    kind: Annotated[TemplateKind | None, Query(description="Only templates of this kind.")] = None,
) -> Page[TemplatePublic]:
    service = _service(request, session, principal.tenant)
    result = await service.list_templates(page, kind=kind)
    items = [_public(t, await service.version_of(t)) for t in result.items]
    return Page(items=items, next_cursor=result.next_cursor)


@router.post("", response_model=TemplatePublic, status_code=status.HTTP_201_CREATED)
async def create_template(
    body: TemplateCreate, request: Request, principal: MemberDep, session: SessionDep
) -> TemplatePublic:
    return _public(*await _service(request, session, principal.tenant).create(body))


@router.get("/{ref}", response_model=TemplatePublic)
async def get_template(ref: str, request: Request, principal: PrincipalDep, session: SessionDep) -> TemplatePublic:
    service = _service(request, session, principal.tenant)
    template = await service.get_by_ref(ref)
    return _public(template, await service.version_of(template))


@router.patch("/{ref}", response_model=TemplatePublic)
async def update_template(
    ref: str, body: TemplateUpdate, request: Request, principal: MemberDep, session: SessionDep
) -> TemplatePublic:
    """Change the template. New ``parameters`` or ``body`` make a new version; old versions never change."""
    return _public(*await _service(request, session, principal.tenant).update(ref, body))


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_template(ref: str, request: Request, principal: MemberDep, session: SessionDep) -> Response:
    """Delete the template and its versions; runs made from it keep their snapshots."""
    await _service(request, session, principal.tenant).delete(ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{ref}/versions", response_model=Page[TemplateVersionPublic])
async def list_template_versions(
    ref: str, request: Request, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[TemplateVersionPublic]:
    """Every version, newest first."""
    result = await _service(request, session, principal.tenant).list_versions(ref, page)
    return Page(items=[TemplateVersionPublic.model_validate(v) for v in result.items], next_cursor=result.next_cursor)


@router.post(
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
    sessions: SessionmakerDep,
) -> TemplateInstantiation | AutomationTemplateInstantiation:
    """Validate ``params``, render the body and start what the template describes, carrying the snapshot:
    kind=action an ActionRun; kind=automation a run of the automation made (or reused) from the rendered spec."""
    service = _service(request, session, principal.tenant)
    if (await service.get_by_ref(ref)).kind is TemplateKind.automation:
        started = await AutomationTemplateService(session, principal.tenant, sessions, service.registry).instantiate(
            ref, body
        )
        detail = await AutomationRunService(session, principal.tenant, sessions, service.registry).detail(
            started.run.id
        )
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
