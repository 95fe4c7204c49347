"""Real HTTP servers on 127.0.0.x that record what reaches them, and a scripted DNS resolver.

Servers run ``http.server`` in a thread, so they answer while the test's event loop awaits the client. A "canary" is a
server that must receive nothing: the tests assert on ``canary.requests == []``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from virtuousai.net import IPAddress


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


Responder = Callable[[RecordedRequest], Reply]


def ok(request: RecordedRequest) -> Reply:
    return Reply()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading (the body cap) or gives up (timeouts, cancellation) is expected here.
        pass


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


class RecordingServer:
    """An HTTP(S) server on ``host:port`` that records every request and answers with ``respond``."""

    def __init__(self, host: str, port: int, respond: Responder, tls_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.respond = respond
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                recorder.requests.append(recorded)
                reply = recorder.respond(recorded)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server_class = _QuietServer6 if ":" in host else _QuietServer
        self._server = server_class((host, port), Handler)
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/", *, scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


ServerFactory = Callable[..., RecordingServer]


class ScriptedResolver:
    """A DNS that answers from a script: for each name, one list of addresses per call (the last one repeats).

    ``calls`` records every name asked, so a test can prove a name was resolved exactly once.
    """

    def __init__(self, script: dict[str, Sequence[Sequence[str]]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> Sequence[IPAddress]:
        self.calls.append(host)
        answers = self.script[host]
        answer = answers[min(self.calls.count(host), len(answers)) - 1]
        return [ipaddress.ip_address(address) for address in answer]
