"""RFC 9457 problem details: one model, one renderer, and the exception handlers that use them."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from virtuousai.api.middleware import REQUEST_ID_STATE_KEY
from virtuousai.errors import PROBLEM_TYPE_BASE, VaiError
from virtuousai.logging import request_id_var

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = PROBLEM_TYPE_BASE


class FieldErrorModel(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    line: int | None = Field(default=None, description="1-based source line, for documents such as agent specs.")


class Problem(BaseModel):
    """An error. ``type`` is stable (branch on it); ``detail`` is for people; ``errors`` lists invalid fields."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["urn:virtuousai:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldErrorModel] | None = None


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_doc(description: str) -> dict[str, Any]:
    """The OpenAPI entry of an error answer. ``model`` registers the Problem schema (FastAPI then also lists it
    under application/json); the explicit content puts that schema under the media type we actually send, so
    clients and schemathesis validate error bodies against it."""
    return {
        "model": Problem,
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# Documented on every /api/v1 route so clients and schemathesis know every error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: problem_doc(description)
    for status, description in {
        400: "Malformed request (bad JSON, bad cursor)",
        401: "Missing, malformed, unknown, revoked or expired API key",
        403: "The caller's role may not do this",
        404: "No such resource in this organization",
        409: "Conflicts with the current state",
        413: "The request body is larger than the server accepts (`VAI_MAX_BODY_BYTES`)",
        422: "Invalid fields, with their paths in `errors`",
    }.items()
}


def _clean_loc(loc: tuple[Any, ...] | list[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


async def _vai_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VaiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(
        request,
        exc.status,
        exc.type_slug,
        exc.title,
        exc.detail,
        errors=list(exc.errors) or None,
        headers=headers,
        **exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _clean_loc(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return problem_response(
            request, 400, "malformed-json", "Malformed JSON", "the request body is not valid JSON", errors=errors
        )
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem_response(request, 422, "validation-error", "Validation failed", summary, errors=errors)


def allowed_methods(app: Starlette, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path``: the ``Allow`` of a 405 (RFC 9110, 15.5.6).

    Starlette names only the methods of the first route whose path matched, and a path usually has several routes
    (``GET`` and ``POST /connections``)."""
    routes: list[tuple[re.Pattern[str], int, frozenset[str]]] | None = getattr(app.state, "method_routes", None)
    if routes is None:
        routes = []
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            template = context.path or getattr(route, "path", None)
            methods = getattr(route, "methods", None)
            if template is not None and methods:
                pattern, _, params = compile_path(template)
                routes.append((pattern, len(params), frozenset(methods)))
        app.state.method_routes = routes
    matching = [(params, methods) for pattern, params, methods in routes if pattern.match(path)]
    # The resource is the most specific template that matches: /automations/schema, not /automations/{ref}.
    fewest = min((params for params, _ in matching), default=0)
    return sorted({method for params, methods in matching if params == fewest for method in methods})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 403: "forbidden"}.get(
        exc.status_code, "http-error"
    )
    title = str(exc.detail) if exc.status_code < 500 else "Error"
    if exc.status_code == 413:  # api/body_limit.py: a body that went past the limit while it streamed in
        slug, title = "body-too-large", "Request body too large"
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        allowed = allowed_methods(request.app, request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return problem_response(
        request,
        exc.status_code,
        slug,
        title,
        str(exc.detail),
        headers=headers or None,
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Starlette runs this handler outside every middleware, so the request id middleware has already reset its
    # context variable and will not add its header: restore both from the request so the 500, its body and its
    # log line still carry the id.
    request_id = getattr(request.state, REQUEST_ID_STATE_KEY, None)
    token = request_id_var.set(request_id)
    try:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "internal-error",
            "Internal error",
            "an unexpected error occurred; the request id identifies it in the logs",
            headers={"X-Request-ID": request_id} if request_id else None,
        )
    finally:
        request_id_var.reset(token)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VaiError, _vai_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
