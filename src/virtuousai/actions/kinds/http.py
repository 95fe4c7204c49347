"""``http_request``: one HTTP request to a public address, through the SSRF-safe client (``virtuousai.net``).

Risk ``write``: a request can change the world, so by default it waits for approval. The run id goes out as the
``Idempotency-Key`` header (unless the inputs set one), so a retried attempt can be recognised by servers that
accept one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from typing import Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from virtuousai.net import DestinationPolicy, OutboundRequestError, parse_target_url, safe_request
from virtuousai.runtime.context import ActionContext, CancellationToken, Cancelled
from virtuousai.runtime.kinds import action_kind

# The ActionContext.options key the runtime fills from Settings.http_allow_loopback (tests' own servers only).
ALLOW_LOOPBACK_OPTION = "http_allow_loopback"

MAX_BODY_BYTES = 1024 * 1024  # the output is stored with the run: keep it small
MAX_TIMEOUT_S = 300.0

# The client sets these itself (Host pins the real name; the others frame the body).
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpRequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = "GET"
    url: str = Field(max_length=8192, description="http or https; the host must resolve to public addresses only.")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers (not Host or framing ones).")
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
    def _url_is_http(cls, url: str) -> str:
        # Scheme, credentials and host are checked now, so a bad URL is a 422 when the run is created; the
        # addresses can only be checked when the run executes (DNS answers change).
        try:
            parse_target_url(url)
        except OutboundRequestError as exc:
            raise ValueError(exc.detail) from None
        return url

    @field_validator("headers")
    @classmethod
    def _headers_are_sendable(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name[:100]!r}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the client and cannot be given")
            if _HEADER_VALUE_FORBIDDEN.search(value):
                raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")
        return headers


class HttpRequestOutput(BaseModel):
    status: int
    headers: dict[str, str] = Field(description="Repeated headers are joined with ', '.")
    body: str = Field(description="Decoded as text (charset from Content-Type, else UTF-8), at most max_body_bytes.")
    truncated: bool = Field(description="The server sent more than max_body_bytes.")
    url: str = Field(description="The final URL, after redirects.")
    elapsed_ms: float


@action_kind(
    "http_request",
    risk="write",
    description="Sends one HTTP request to a public address (SSRF-safe: no private, loopback or metadata hosts).",
    timeout_s=MAX_TIMEOUT_S + 30,
)
async def http_request(ctx: ActionContext, inputs: HttpRequestInput) -> HttpRequestOutput:
    headers = httpx.Headers(inputs.headers)
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    content: bytes | None = None
    if isinstance(inputs.body, str):
        content = inputs.body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif inputs.body is not None:
        content = json.dumps(inputs.body, ensure_ascii=False, separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")

    policy = DestinationPolicy(allow_loopback=bool(ctx.options.get(ALLOW_LOOPBACK_OPTION, False)))
    response = await _unless_cancelled(
        ctx.cancel,
        safe_request(
            inputs.method,
            inputs.url,
            headers=headers,
            content=content,
            timeout=inputs.timeout_s,
            max_bytes=inputs.max_body_bytes,
            follow_redirects=inputs.follow_redirects,
            policy=policy,
        ),
    )
    return HttpRequestOutput(
        status=response.status_code,
        headers={name: ", ".join(response.headers.get_list(name)) for name in response.headers},
        body=response.text,
        truncated=response.truncated,
        url=response.url,
        elapsed_ms=response.elapsed_ms,
    )


T = TypeVar("T")


async def _unless_cancelled(token: CancellationToken, work: Awaitable[T]) -> T:
    """Await ``work``, abandoning it (and raising ``Cancelled``) as soon as the run is cancelled."""
    work_task = asyncio.ensure_future(work)
    cancelled_task = asyncio.ensure_future(token.wait())
    try:
        await asyncio.wait({work_task, cancelled_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled_task.cancel()
        if not work_task.done():
            work_task.cancel()
            # Let the request unwind (close its connection) before the run moves on.
            await asyncio.gather(work_task, return_exceptions=True)
    if work_task.done() and not work_task.cancelled():
        return work_task.result()
    raise Cancelled(token.reason or "cancelled")
