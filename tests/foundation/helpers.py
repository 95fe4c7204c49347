"""What the foundation tests share: reading the app's routes, and checking a problem+json answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

API_PREFIX = "/api/v1"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:virtuousai:problem:"

# `{name}` or `{name:convertor}` in a Starlette path template.
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Endpoint:
    """One method of one API route, e.g. ``POST /api/v1/api-keys/{key_id}/revoke``."""

    method: str
    path: str  # the full path, with the prefixes of the routers it is mounted through
    route: APIRoute  # the route as declared (its own path lacks those prefixes)

    @property
    def params(self) -> list[str]:
        return path_params(self.path)

    def param_type(self, name: str) -> Any:
        """The declared type of path parameter ``name`` (also when a dependency declares it)."""
        pending: list[Dependant] = [self.route.dependant]
        while pending:
            dependant = pending.pop()
            for param in dependant.path_params:
                if param.name == name:
                    return param.field_info.annotation
            pending.extend(dependant.dependencies)
        return str

    @property
    def has_body(self) -> bool:
        return self.route.body_field is not None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def path_params(template: str) -> list[str]:
    return _PATH_PARAM.findall(template)


def fill_path(template: str, values: dict[str, str]) -> str:
    return _PATH_PARAM.sub(lambda m: values[m.group(1)], template)


def template_through(template: str, param: str) -> str:
    """The template up to and including ``{param}``: ``/a/{x}/b/{y}/c`` through ``y`` is ``/a/{x}/b/{y}``."""
    match = re.search(r"\{" + param + r"(?::\w+)?\}", template)
    assert match is not None, (template, param)
    return template[: match.end()]


def _mounted_api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """``(full path, route)`` for every APIRoute, however deeply its router is included."""
    iter_route_contexts = getattr(routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # FastAPI before 0.16x flattened included routers into app.routes
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, route
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.path is not None:
            yield context.path, context.original_route


def api_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every method of every route under /api/v1, discovered from the app at run time (so new routes count)."""
    endpoints = [
        Endpoint(method, path, route)
        for path, route in _mounted_api_routes(app)
        if path.startswith(API_PREFIX + "/")
        for method in sorted(route.methods)
    ]
    assert endpoints, "the app has no routes under /api/v1"
    return endpoints


def is_page_route(route: APIRoute) -> bool:
    """A list route: it answers ``Page[T]`` (``{items, next_cursor}``)."""
    model = route.response_model
    return (
        isinstance(model, type) and issubclass(model, BaseModel) and {"items", "next_cursor"} <= set(model.model_fields)
    )


def list_endpoints(app: FastAPI) -> list[Endpoint]:
    return [e for e in api_endpoints(app) if e.method == "GET" and is_page_route(e.route)]


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with this status (and type slug); returns the body."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_TYPE_BASE), body
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if slug is not None:
        assert body["type"] == PROBLEM_TYPE_BASE + slug, body
    return body
