"""``/api/v1/connections``. ``{ref}`` is an id, ``slug:<slug>`` or ``provider:<provider>`` (the default).

Reading needs viewer; testing needs member; creating, updating and deleting need admin. No response carries a
secret: ``ConnectionPublic`` lists only the names of the secret fields that are set.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from virtuousai.api.deps import AdminDep, MemberDep, PageDep, PrincipalDep, SessionDep, SettingsDep
from virtuousai.api.schemas import Page
from virtuousai.connections.models import (
    ConnectionCreate,
    ConnectionPublic,
    ConnectionTestResult,
    ConnectionUpdate,
    ProviderPublic,
)
from virtuousai.connections.providers import PROVIDERS
from virtuousai.connections.service import ConnectionService
from virtuousai.crypto.kek import KeyProvider
from virtuousai.crypto.providers import build_key_provider
from virtuousai.net import DestinationPolicy

router = APIRouter(prefix="/connections", tags=["connections"])


def get_key_provider(request: Request) -> KeyProvider:
    """The app's KEK provider, built on first use from the app's settings and kept for the app's lifetime."""
    provider: KeyProvider | None = getattr(request.app.state, "key_provider", None)
    if provider is None:
        provider = build_key_provider(request.app.state.settings)
        request.app.state.key_provider = provider
    return provider


KeysDep = Annotated[KeyProvider, Depends(get_key_provider)]
RefPath = Annotated[str, "An id, slug:<slug> or provider:<provider>."]


@router.get("/providers", response_model=list[ProviderPublic])
async def list_providers(principal: PrincipalDep) -> list[ProviderPublic]:
    """Every provider with the JSON schemas of its config (returned by the API) and its secrets (write-only)."""
    return [
        ProviderPublic(
            slug=spec.slug,
            title=spec.title,
            category=spec.category,
            description=spec.description,
            config_schema=spec.config_model.model_json_schema(),
            secrets_schema=spec.secrets_model.model_json_schema(),
            supports_test=spec.testable,
        )
        for spec in PROVIDERS.values()
    ]


@router.get("", response_model=Page[ConnectionPublic])
async def list_connections(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    provider: Annotated[str | None, Query(max_length=40, description="Only this provider's connections.")] = None,
) -> Page[ConnectionPublic]:
    result = await ConnectionService(session, principal.tenant).list(page, provider=provider)
    return Page(items=[ConnectionPublic.model_validate(c) for c in result.items], next_cursor=result.next_cursor)


@router.post("", response_model=ConnectionPublic, status_code=status.HTTP_201_CREATED)
async def create_connection(
    body: ConnectionCreate, principal: AdminDep, session: SessionDep, keys: KeysDep
) -> ConnectionPublic:
    """Create a connection; its secrets are sealed before they are stored and are never returned."""
    connection = await ConnectionService(session, principal.tenant, keys).create(body)
    return ConnectionPublic.model_validate(connection)


@router.get("/{ref}", response_model=ConnectionPublic)
async def get_connection(ref: RefPath, principal: PrincipalDep, session: SessionDep) -> ConnectionPublic:
    return ConnectionPublic.model_validate(await ConnectionService(session, principal.tenant).get_by_ref(ref))


@router.patch("/{ref}", response_model=ConnectionPublic)
async def update_connection(
    ref: RefPath, body: ConnectionUpdate, principal: AdminDep, session: SessionDep, keys: KeysDep
) -> ConnectionPublic:
    """Change fields; ``config`` and ``secrets``, when given, replace the whole document."""
    connection = await ConnectionService(session, principal.tenant, keys).update(ref, body)
    return ConnectionPublic.model_validate(connection)


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_connection(ref: RefPath, principal: AdminDep, session: SessionDep) -> Response:
    """Delete a connection; 409 while an automation or agent references it."""
    await ConnectionService(session, principal.tenant).delete(ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{ref}/test", response_model=ConnectionTestResult)
async def test_connection(
    ref: RefPath, principal: MemberDep, session: SessionDep, keys: KeysDep, settings: SettingsDep
) -> ConnectionTestResult:
    """Check connectivity (databases: open and SELECT 1; http_api: one GET of base_url through the SSRF-safe
    client). A failed check is a 200 with ``ok: false``; the error never carries a secret."""
    policy = DestinationPolicy(allow_loopback=settings.http_allow_loopback)
    return await ConnectionService(session, principal.tenant, keys).test(ref, policy=policy)
