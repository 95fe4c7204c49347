"""Request dependencies, declared once as ``Annotated`` aliases.

``SessionDep`` is one transaction per request (services commit explicitly; anything uncommitted is rolled back).
``PrincipalDep`` authenticates (a key verified a moment ago comes from ``VerifiedKeys``, without a database read);
``TenantDep`` is the tenant for repositories; ``require_role`` guards by role.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.errors import FieldError, Forbidden, UnsupportedMediaType, ValidationFailed
from virtuousai.orgs.service import Principal, authenticate, hash_key, presented_key
from virtuousai.orgs.tables import Role
from virtuousai.orgs.verified_keys import VerifiedKeys
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.store.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    InvalidCursor,
    PageRequest,
    decode_cursor,
)
from virtuousai.store.tenant import TenantContext


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_registry(request: Request) -> KindRegistry:
    """The action kinds this process runs with (built once, by the process's composition)."""
    registry: KindRegistry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[KindRegistry, Depends(get_registry)]
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
    authorization = request.headers.get("authorization")
    key_hash = hash_key(presented_key(authorization))
    verified: VerifiedKeys = request.app.state.verified_keys
    principal = verified.get(key_hash)
    if principal is not None:
        return principal
    generation = verified.generation
    # Its own short transaction, so the occasional last_used_at write commits even on read-only requests.
    async with sessions() as session:
        principal = await authenticate(session, authorization)
        await session.commit()
    verified.keep(key_hash, principal, verified_in=generation)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_tenant(principal: PrincipalDep) -> TenantContext:
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


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        # Documented as what it is, a string of an id's shape (not "a string or null": a query has no null).
        WithJsonSchema({"type": "string", "pattern": CURSOR_PATTERN}),
        Query(description="`next_cursor` of the previous page."),
    ] = None,
) -> PageRequest:
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except InvalidCursor as exc:
            raise ValidationFailed.at(["query", "cursor"], str(exc)) from exc
    return PageRequest(limit=limit, cursor=cursor)


PageDep = Annotated[PageRequest, Depends(page_params)]

# The SSE routes' resume point: the `id` of the last event seen (its `seq`), as an EventSource sends it back.
LastEventIdHeader = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,18}$"}),  # a header is never null: absent or a seq
    Header(description="Resume after this event id (its `seq`)."),
]


def resume_after(last_event_id: str | None) -> int:
    """The ``seq`` after which a stream resumes: 0 without a ``Last-Event-ID``; 422 for one not of this shape."""
    if last_event_id is None:
        return 0
    if not re.fullmatch(r"[0-9]{1,18}", last_event_id.strip()):
        raise ValidationFailed.at(["header", "last-event-id"], "must be the id of an event of this stream")
    return int(last_event_id)


def _nul_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    """The path of the first string (or key) in a JSON document that contains U+0000, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return [*path, key]
            found = _nul_path(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, [*path, index])
            if found is not None:
                return found
    return None


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json`` (parameters such as ``charset`` aside), as FastAPI
    decides whether to parse a body as JSON."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """A route that takes a JSON body refuses a body declared as anything else with 415, naming the type it got.

    Without this FastAPI hands the raw bytes to validation, which answers 422 "Input should be a valid dictionary",
    and ``curl -d`` (which declares ``application/x-www-form-urlencoded``) looks like a schema error. FastAPI reads
    no body without a ``Content-Type`` either (its strict default), so a missing one is refused the same way."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    content_type = request.headers.get("content-type")
    if (content_type is not None and is_json_media_type(content_type)) or not await request.body():
        return
    declared = f"this request declared {content_type}" if content_type else "this request declared none"
    raise UnsupportedMediaType(
        f"the body must be JSON, sent with Content-Type: application/json ({declared})",
        errors=[FieldError(["header", "content-type"], f"expected application/json, got {content_type or 'none'}")],
    )


async def reject_nul_characters(request: Request) -> None:
    """Refuse U+0000 anywhere in a request. PostgreSQL cannot store it in text or JSON while SQLite can, so without
    this check the same request would be a 500 on one database and stored on the other."""
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise ValidationFailed.at(["path", name], "must not contain NUL (U+0000) characters")
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise ValidationFailed.at(["query", name], "must not contain NUL (U+0000) characters")
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    body = await request.body()
    # Cheap pre-check: JSON can only carry U+0000 as an escape (a raw NUL byte is invalid JSON anyway).
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    try:
        document = json.loads(body)
    except ValueError:
        return  # malformed JSON is reported by body validation as a 400
    found = _nul_path(document, ["body"])
    if found is not None:
        raise ValidationFailed.at(found, "must not contain NUL (U+0000) characters")
