"""The CLI as a client of a running server: ``VAI_URL`` (default ``http://127.0.0.1:8000``) with ``VAI_API_KEY``.

These commands (``vai run``, ``vai runs``, ``vai query``, ``vai connections``) speak only the public API, so they
work against any deployment and act in the key's organization with the key's role. A problem+json answer is
printed once, readably (``cli/output.py``), in the command's words; 4xx exits 2, 5xx and an unreachable server 1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import typer

from virtuousai import eventloop
from virtuousai.cli.output import EXIT_FAILED, EXIT_REFUSED, Words, print_error
from virtuousai.config import Settings

T = TypeVar("T")
API = "/api/v1"


class ServerProblem(Exception):
    """A problem+json answer (or any non-2xx one) from the server."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


class Unreachable(Exception):
    pass


@dataclass
class Server:
    """One server: ``request`` answers the decoded JSON body or raises ``ServerProblem``/``Unreachable``."""

    url: str
    http: httpx.AsyncClient
    headers: dict[str, str] = field(default_factory=dict)

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self.http.request(method, API + path, json=json_body, params=query)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        if response.is_success:
            return response.json() if response.content else None
        raise problem_of(response)

    @asynccontextmanager
    async def stream(self, path: str, headers: Mapping[str, str]) -> AsyncIterator[httpx.Response]:
        try:
            async with self.http.stream("GET", API + path, headers=dict(headers), timeout=httpx.Timeout(60.0)) as r:
                if not r.is_success:
                    await r.aread()
                    raise problem_of(r)
                yield r
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc


def problem_of(response: httpx.Response) -> ServerProblem:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        errors = body.get("errors") if isinstance(body.get("errors"), list) else []
        return ServerProblem(response.status_code, body["detail"], errors or [])
    return ServerProblem(response.status_code, f"{response.status_code} {response.reason_phrase}", [])


@asynccontextmanager
async def connect(settings: Settings | None = None) -> AsyncIterator[Server]:
    settings = settings or Settings()
    if settings.api_key is None:
        typer.echo(
            "error: VAI_API_KEY is not set: these commands call the server at VAI_URL with an API key "
            "(`vai key create`, or var/demo-api-key of `vai serve --demo`)",
            err=True,
        )
        raise typer.Exit(code=EXIT_REFUSED)
    url = settings.url.rstrip("/")
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(30.0)) as http:
        yield Server(url, http)


def run(main: Coroutine[Any, Any, T], words: Words | None = None) -> T:
    """Run a client command's coroutine: the server's problems printed once, in the command's words."""
    try:
        return eventloop.run(main)
    except ServerProblem as exc:
        print_error(exc.detail, exc.errors, words)
        raise typer.Exit(code=EXIT_REFUSED if exc.status < 500 else EXIT_FAILED) from None
    except Unreachable as exc:
        typer.echo(f"error: {exc} (is `vai serve` running there? VAI_URL sets the address)", err=True)
        raise typer.Exit(code=EXIT_FAILED) from None


def segment(value: str) -> str:
    """A path segment as typed (``run_…``, ``slug:shop``), escaped so it can only ever name one resource."""
    return quote(value, safe=":")


def ref_of(value: str, id_prefix: str) -> str:
    """An id (``<prefix>_…``) or an explicit ``slug:``/``provider:`` reference as given; a bare name is a slug."""
    return value if value.startswith((f"{id_prefix}_", "slug:", "provider:")) else f"slug:{value}"
