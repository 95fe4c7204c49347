"""``/api/v1/templates``. ``{ref}`` is an id or ``slug:<slug>``.

Reading needs viewer; creating, updating, deleting and instantiating need member. Instantiating
(``POST /templates/{ref}/instantiate``) is mounted by the automations router, which starts either kind.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from virtuousai.api.deps import MemberDep, PageDep, PrincipalDep, SessionDep
from virtuousai.api.schemas import Page
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.models import (
    TemplateCreate,
    TemplatePublic,
    TemplateUpdate,
    TemplateVersionPublic,
)
from virtuousai.templates.service import TemplateService
from virtuousai.templates.tables import Template, TemplateKind, TemplateVersion

router = APIRouter(prefix="/templates", tags=["templates"])


def _service(request: Request, session: SessionDep, tenant: TenantContext) -> TemplateService:
    return TemplateService(session, tenant, request.app.state.registry)


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
