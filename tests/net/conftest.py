from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from tests.net.helpers import RecordingServer, Responder, ServerFactory, ok


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    """``serve(respond, host="127.0.0.1", port=0, tls_context=None)`` → a started ``RecordingServer``, stopped after."""
    servers: list[RecordingServer] = []

    def start(
        respond: Responder = ok, *, host: str = "127.0.0.1", port: int = 0, tls_context: ssl.SSLContext | None = None
    ) -> RecordingServer:
        server = RecordingServer(host, port, respond, tls_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
