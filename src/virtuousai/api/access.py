"""``/api/v1/me`` and the organization's API keys: the HTTP side of authentication itself (``orgs/`` holds the
tenants, users, keys and ``authenticate``), so it lives with the API's dependencies that authenticate every request.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from virtuousai.api.deps import AdminDep, PageDep, PrincipalDep, SessionDep
from virtuousai.api.schemas import Page
from virtuousai.orgs.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    MePublic,
    OrganizationPublic,
    UserPublic,
)
from virtuousai.orgs.service import ApiKeyService

router = APIRouter(tags=["access"])


@router.get("/me", response_model=MePublic)
async def me(principal: PrincipalDep) -> MePublic:
    """Who this API key acts as: the user, the organization, the effective role and the user's timezone."""
    return MePublic(
        user=UserPublic.model_validate(principal.user),
        organization=OrganizationPublic.model_validate(principal.organization),
        role=principal.role,
        timezone=principal.user.timezone,
        api_key_id=principal.api_key.id,
    )


@router.get("/api-keys", response_model=Page[ApiKeyPublic])
async def list_api_keys(principal: AdminDep, session: SessionDep, page: PageDep) -> Page[ApiKeyPublic]:
    result = await ApiKeyService(session, principal.tenant).list(page)
    return Page(items=[ApiKeyPublic.model_validate(k) for k in result.items], next_cursor=result.next_cursor)


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_api_key(body: ApiKeyCreate, principal: AdminDep, session: SessionDep) -> ApiKeyCreated:
    """A new key for the caller. The response carries the key once; it cannot be read again."""
    issued = await ApiKeyService(session, principal.tenant).create_for_user(
        principal.user.id, name=body.name, role=body.role, expires_at=body.expires_at, acting_role=principal.role
    )
    return ApiKeyCreated(**ApiKeyPublic.model_validate(issued.api_key).model_dump(), key=issued.plaintext)


@router.get("/api-keys/{key_id}", response_model=ApiKeyPublic)
async def get_api_key(key_id: str, principal: AdminDep, session: SessionDep) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(await ApiKeyService(session, principal.tenant).get(key_id))


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyPublic)
async def revoke_api_key(key_id: str, principal: AdminDep, session: SessionDep) -> ApiKeyPublic:
    """Revoke a key at once; requests with it answer 401 from now on. Revoking twice is harmless."""
    return ApiKeyPublic.model_validate(await ApiKeyService(session, principal.tenant).revoke(key_id))
