"""Request dependencies, declared once as ``Annotated`` aliases.

``SessionDep`` is one transaction per request (services commit explicitly; anything uncommitted is rolled back).
``PrincipalDep`` authenticates; ``TenantDep`` is the tenant for repositories; ``require_role`` guards by role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.errors import Forbidden, ValidationFailed
from virtuousai.orgs.service import Principal, authenticate
from virtuousai.orgs.tables import Role
from virtuousai.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor, PageRequest, decode_cursor
from virtuousai.store.tenant import TenantContext


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def get_session(sessions: SessionmakerDep) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


# Declares the scheme in /openapi.json (so /docs offers "Authorize" and clients see how to authenticate). It never
# refuses anything itself (auto_error=False): `authenticate` reads the header and names every 401 case.
bearer_scheme = HTTPBearer(
    scheme_name="ApiKey", bearerFormat="vai_<prefix>_<secret>", description="An API key.", auto_error=False
)


async def get_principal(
    request: Request,
    sessions: SessionmakerDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    # Its own short transaction, so the occasional last_used_at write commits even on read-only requests.
    async with sessions() as session:
        principal = await authenticate(session, request.headers.get("authorization"))
        await session.commit()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_tenant(principal: PrincipalDep) -> TenantContext:
    return principal.tenant


TenantDep = Annotated[TenantContext, Depends(get_tenant)]


def require_role(minimum: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if not principal.role.at_least(minimum):
            raise Forbidden(f"requires role {minimum.value} or higher; this key acts as {principal.role.value}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_role(Role.admin))]
MemberDep = Annotated[Principal, Depends(require_role(Role.member))]


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> PageRequest:
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except InvalidCursor as exc:
            raise ValidationFailed.at(["query", "cursor"], str(exc)) from exc
    return PageRequest(limit=limit, cursor=cursor)


PageDep = Annotated[PageRequest, Depends(page_params)]
