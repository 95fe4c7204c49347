"""``http_request``: one HTTP request through the SSRF-safe client (``virtuousai.net``), to a public URL or to a
connection's API.

Risk ``write``: a request can change the world, so by default it waits for approval. The run id goes out as the
``Idempotency-Key`` header (unless the inputs set one), so a retried attempt can be recognised by servers that
accept one.

Two modes, one rule: **the inputs never carry a credential**, and a credential only ever goes to the host of the
connection it belongs to.

- ``url``: any public URL, sent with no credential at all. Headers that carry one (``Authorization``, ``Cookie``,
  ``X-Api-Key``, …) and credential-like query parameters are refused: a secret in a tool call's arguments would be
  stored with the run, shown in approvals and events, and — when a model wrote it — came from a prompt or a page.
- ``connection`` (+ ``path``): an ``http_api`` connection; the host is its ``base_url``'s and the credentials its own
  (bearer, header, basic or query, per its config), applied here. The caller chooses the path under the base URL,
  never the host: a ``url`` next to a connection, or a path that leaves the base URL (``//host``, ``..``, a scheme),
  is refused. A redirect to another origin drops the credential headers (the connection's own header included).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from virtuousai.actions.kinds.common import (
    ALLOW_LOOPBACK_OPTION,
    REDACTED,
    ToolFailed,
    connection_of,
    destination_policy,
    redact,
    unless_cancelled,
)
from virtuousai.net import OutboundRequestError, parse_target_url, refusal_without_dns, safe_request
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.runtime.kinds import action_kind

__all__ = ["ALLOW_LOOPBACK_OPTION", "HttpRequestInput", "HttpRequestOutput", "SentRequest", "http_request"]

MAX_BODY_BYTES = 1024 * 1024  # the output is stored with the run: keep it small
MAX_TIMEOUT_S = 300.0
CONNECTION_PROVIDER = "http_api"

# The client sets these itself (Host pins the real name; the others frame the body).
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")
# Names that carry credentials, as headers or query parameters: never in the inputs (a connection carries them).
_CREDENTIAL_NAME = re.compile(r"authori[sz]ation|cookie|api[-_]?key|token|secret|passw(or)?d|auth|credential|session")
_CREDENTIAL_PARAMS = frozenset({"key", "sig", "signature"})
_PATH_FORBIDDEN = re.compile(r"[\\\x00-\x20#]")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _credential_params(query: str) -> list[str]:
    names = [name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)]
    return [name for name in names if _CREDENTIAL_NAME.search(name.lower()) or name.lower() in _CREDENTIAL_PARAMS]


class HttpRequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = "GET"
    url: str | None = Field(
        default=None,
        max_length=8192,
        description="http or https; the host must resolve to public addresses only. Not with a connection.",
    )
    connection: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="An http_api connection (its id, slug:<slug> or provider:http_api): the request goes to its "
        "base URL + path, with its credentials.",
    )
    path: str | None = Field(
        default=None,
        max_length=8192,
        description="With a connection: the path (and query) under its base URL, e.g. /v1/items?limit=10.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Request headers (not Host, framing or credential headers)."
    )
    body: str | dict[str, JsonValue] | list[JsonValue] | None = Field(
        default=None,
        description="A string is sent as is (text/plain unless a Content-Type is given); an object or array as "
        "JSON (application/json).",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=MAX_TIMEOUT_S, description="For the whole exchange.")
    follow_redirects: bool = Field(default=True, description="At most 5, each re-checked like the first URL.")
    max_body_bytes: int = Field(
        default=MAX_BODY_BYTES, ge=0, le=MAX_BODY_BYTES, description="The response body is cut after this."
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str | None) -> str | None:
        # Scheme, credentials, host and what a literal host can be judged by are checked now, so a bad URL is a 422
        # when the run is created (not a request someone is asked to approve); the addresses of a name can only be
        # checked when the run executes (DNS answers change).
        if url is None:
            return None
        try:
            parsed = parse_target_url(url)
        except OutboundRequestError as exc:
            raise ValueError(exc.detail) from None
        refusal = refusal_without_dns(parsed)
        if refusal is not None:
            raise ValueError(f"{refusal}: requests go to public addresses only")
        refused = _credential_params(parsed.query.decode("ascii", errors="replace"))
        if refused:
            raise ValueError(f"query parameter {refused[0][:100]!r} looks like a credential: use a connection")
        return url

    @field_validator("path")
    @classmethod
    def _path_stays_under_the_base(cls, path: str | None) -> str | None:
        if path is None:
            return None
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError("the path must start with a single '/' (the host is the connection's)")
        if _PATH_FORBIDDEN.search(path):
            raise ValueError("the path must not contain spaces, control characters, backslashes or '#'")
        route, _, query = path.partition("?")
        if any(urllib.parse.unquote(segment) in (".", "..") for segment in route.split("/")):
            raise ValueError("the path must not contain '.' or '..' segments")
        refused = _credential_params(query)
        if refused:
            raise ValueError(f"query parameter {refused[0][:100]!r} looks like a credential: the connection has it")
        return path

    @field_validator("headers")
    @classmethod
    def _headers_are_sendable(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name[:100]!r}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the client and cannot be given")
            if _CREDENTIAL_NAME.search(name.lower()):
                raise ValueError(f"header {name!r} carries a credential: use a connection, which applies its own")
            if _HEADER_VALUE_FORBIDDEN.search(value):
                raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")
        return headers

    @model_validator(mode="after")
    def _one_destination(self) -> HttpRequestInput:
        if self.connection is not None and self.url is not None:
            raise ValueError("give a connection and a path, or a url, not both (a connection's host is its own)")
        if self.connection is None and self.url is None:
            raise ValueError("give a url, or a connection and a path")
        if self.connection is None and self.path is not None:
            raise ValueError("a path needs a connection (without one, give the whole url)")
        return self


class SentRequest(BaseModel):
    """What was sent, as a replay would repeat it: never a credential's value."""

    method: str
    url: str = Field(description="The first URL (a query credential shows as [redacted]).")
    header_names: list[str] = Field(description="The names of the headers sent, lower-case; not their values.")
    connection: str | None = Field(description="The id of the connection whose base URL and credentials were used.")
    redirects: list[str] = Field(description="The URLs that answered with a redirect, in order.")


class HttpRequestOutput(BaseModel):
    status: int
    headers: dict[str, str] = Field(description="Repeated headers are joined with ', '.")
    body: str = Field(description="Decoded as text (charset from Content-Type, else UTF-8), at most max_body_bytes.")
    truncated: bool = Field(description="The server sent more than max_body_bytes.")
    url: str = Field(description="The final URL, after redirects.")
    elapsed_ms: float
    request: SentRequest


@dataclass
class _Prepared:
    url: httpx.URL
    headers: httpx.Headers
    connection_id: str | None = None
    credential_headers: tuple[str, ...] = ()
    secrets: list[str] = field(default_factory=list)


@action_kind(
    "http_request",
    risk="write",
    description="Sends one HTTP request to a public address, or to an http_api connection's API with its "
    "credentials (SSRF-safe: no private, loopback or metadata hosts).",
    timeout_s=MAX_TIMEOUT_S + 30,
)
async def http_request(ctx: ActionContext, inputs: HttpRequestInput) -> HttpRequestOutput:
    if inputs.connection is not None:
        connection = await connection_of(ctx, inputs.connection, CONNECTION_PROVIDER)
        prepared = _through_connection(connection, inputs.path or "/", inputs.headers)
    else:
        prepared = _Prepared(url=parse_target_url(inputs.url or ""), headers=httpx.Headers(inputs.headers))
    headers = prepared.headers
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    content: bytes | None = None
    if isinstance(inputs.body, str):
        content = inputs.body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif inputs.body is not None:
        content = json.dumps(inputs.body, ensure_ascii=False, separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")

    response = await unless_cancelled(
        ctx.cancel,
        safe_request(
            inputs.method,
            prepared.url,
            headers=headers,
            content=content,
            timeout=inputs.timeout_s,
            max_bytes=inputs.max_body_bytes,
            follow_redirects=inputs.follow_redirects,
            policy=destination_policy(ctx),
            credential_headers=prepared.credential_headers,
        ),
    )
    secrets = prepared.secrets
    return HttpRequestOutput(
        status=response.status_code,
        headers={name: redact(", ".join(response.headers.get_list(name)), secrets) for name in response.headers},
        body=redact(response.text, secrets),
        truncated=response.truncated,
        url=redact(response.url, secrets),
        elapsed_ms=response.elapsed_ms,
        request=SentRequest(
            method=inputs.method,
            url=redact(str(prepared.url), secrets),
            header_names=sorted({name.lower() for name in headers} | {"host", "user-agent"}),
            connection=prepared.connection_id,
            redirects=[redact(url, secrets) for url in response.redirects],
        ),
    )


def _through_connection(connection: ResolvedConnection, path: str, extra: Mapping[str, str]) -> _Prepared:
    """The connection's base URL + ``path``, its headers, then the caller's, then its credentials."""
    config, secrets = connection.config, connection.secrets
    base = parse_target_url(str(config.get("base_url", "")))
    url = parse_target_url(str(base).rstrip("/") + path)
    base_path = base.path.rstrip("/")
    if (url.scheme, url.raw_host, url.port) != (base.scheme, base.raw_host, base.port) or not (
        url.path == base_path or url.path.startswith(base_path + "/")
    ):
        raise ToolFailed("path_outside_connection", "the path leaves the connection's base URL")
    headers = httpx.Headers(dict(config.get("headers") or {}))
    headers.update(extra)
    prepared = _Prepared(url=url, headers=headers, connection_id=connection.id)
    auth = config.get("auth_type", "bearer")
    token = str(secrets.get("token") or "")
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
        prepared.secrets = [token]
    elif auth == "header":
        name = str(config["header_name"])
        headers[name] = token
        prepared.credential_headers, prepared.secrets = (name,), [token]
    elif auth == "basic":
        username, password = str(secrets.get("username") or ""), str(secrets.get("password") or "")
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {encoded}"
        prepared.secrets = [encoded, password]
    elif auth == "query":
        prepared.url = url.copy_add_param(str(config["query_param"]), token)
        prepared.secrets = [token, urllib.parse.quote(token, safe=""), urllib.parse.quote_plus(token)]
    prepared.secrets = [s for s in prepared.secrets if s and s != REDACTED]
    return prepared
