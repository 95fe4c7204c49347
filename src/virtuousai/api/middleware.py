"""Request ids: taken from ``X-Request-ID`` when it looks sane, otherwise minted; echoed on every response and put
on every log line through a context variable. Pure ASGI, so streaming (SSE) responses pass through untouched."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from virtuousai.ids import new_id
from virtuousai.logging import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_STATE_KEY = "request_id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else new_id("req")
        # Also kept on the request: an unhandled error is answered by Starlette's ServerErrorMiddleware, which
        # sits outside this middleware, after the context variable has been reset (see problems._unhandled).
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
