"""A limit on request bodies, held while the body streams in, before anything parses it.

A request that declares a ``Content-Length`` over the limit is answered 413 at once, without reading its body. One
that does not (``Transfer-Encoding: chunked``) or that sends more than it declared is counted as it arrives: the
read that goes past the limit raises ``BodyTooLarge``, which FastAPI passes on untouched (it is an
``HTTPException``) and the problem handler renders as 413. Either way the server holds at most the limit plus one
chunk of the body, and the connection is closed after the answer (the rest of the body is never read).

The limit is ``VAI_MAX_BODY_BYTES`` on every route. A route that must take more (a file upload) names its path
prefix and its own limit in ``LARGER_BODIES`` (``virtuousai/app.py``); none does today.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from virtuousai.api.problems import problem_response

SLUG = "body-too-large"
TITLE = "Request body too large"
_CLOSE = {"Connection": "close"}


def _detail(limit: int) -> str:
    return f"the request body is larger than the {limit:,} bytes this route accepts (VAI_MAX_BODY_BYTES)"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit), headers=dict(_CLOSE))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Longest prefix first, so a more specific route's limit wins.
        self.larger = sorted((larger or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.larger if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(Request(scope), 413, SLUG, TITLE, _detail(limit), headers=dict(_CLOSE))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
