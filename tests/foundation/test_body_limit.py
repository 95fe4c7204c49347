"""Request bodies over VAI_MAX_BODY_BYTES answer 413 before they are read whole, declared or streamed.

In process (httpx's ASGI transport pulls the body from the generator only as the app reads it, so the count of
chunks handed out is what the server read), then against a real `vai serve` over a socket.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import OrgHandle
from tests.servers import VAI, Server, vai_env
from virtuousai.config import Settings

LIMIT = 1024 * 1024
CHUNK = 64 * 1024
RUNS = "/api/v1/action-runs"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", max_body_bytes=LIMIT)


def _echo_body(size: int) -> bytes:
    """A valid echo run whose JSON is ``size`` bytes long (padded with spaces)."""
    body = json.dumps({"kind": "echo", "inputs": {"note": "x"}}).encode()
    return body + b" " * (size - len(body))


def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:virtuousai:problem:body-too-large"
    assert f"{LIMIT:,} bytes" in problem["detail"]
    assert problem["request_id"] and response.headers["x-request-id"] == problem["request_id"]
    assert response.headers["connection"] == "close"


async def test_a_declared_length_over_the_limit_is_refused_unread(client: httpx.AsyncClient, org: OrgHandle) -> None:
    handed_out = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal handed_out
        big = _echo_body(50 * 1024 * 1024)  # the 50 MB run of the issue
        for start in range(0, len(big), CHUNK):
            handed_out += 1
            yield big[start : start + CHUNK]

    headers = {**org.headers, "Content-Length": str(50 * 1024 * 1024), "Content-Type": "application/json"}
    response = await client.post(RUNS, headers=headers, content=body())
    _assert_413(response)
    assert handed_out == 0  # answered from the header alone
    assert (await client.get(RUNS, headers=org.headers)).json()["items"] == []


async def test_a_streamed_body_is_cut_off_at_the_limit(client: httpx.AsyncClient, org: OrgHandle) -> None:
    handed_out = 0
    total_chunks = (50 * 1024 * 1024) // CHUNK

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal handed_out
        yield b'{"kind": "echo", "inputs": {"note": "'
        for _ in range(total_chunks):
            handed_out += 1
            yield b"x" * CHUNK
        yield b'"}}'

    response = await client.post(RUNS, headers={**org.headers, "Content-Type": "application/json"}, content=body())
    _assert_413(response)
    assert handed_out <= LIMIT // CHUNK + 1 < total_chunks  # read up to the limit plus one chunk, no further
    assert (await client.get(RUNS, headers=org.headers)).json()["items"] == []


async def test_a_body_at_the_limit_passes(client: httpx.AsyncClient, org: OrgHandle) -> None:
    exact = await client.post(
        RUNS, headers={**org.headers, "Content-Type": "application/json"}, content=_echo_body(LIMIT)
    )
    assert exact.status_code == 201, exact.text

    async def streamed() -> AsyncIterator[bytes]:
        body = _echo_body(LIMIT)
        for start in range(0, len(body), CHUNK):
            yield body[start : start + CHUNK]

    chunked = await client.post(RUNS, headers={**org.headers, "Content-Type": "application/json"}, content=streamed())
    assert chunked.status_code == 201, chunked.text
    one_more = await client.post(
        RUNS, headers={**org.headers, "Content-Type": "application/json"}, content=_echo_body(LIMIT + 1)
    )
    _assert_413(one_more)


async def test_the_limit_holds_before_authentication_and_on_every_route(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/query", "/api/v1/connections", "/api/v1/automations", "/healthz"):
        response = await client.post(path, content=b"{" + b" " * LIMIT + b"}")
        _assert_413(response)


# --- against `vai serve` (uvicorn, httptools): the same, on a real socket -------------------------------------


def _answer_once_readable(sock: socket.socket, payload: Iterator[bytes]) -> tuple[int, bytes]:
    """Send ``payload`` piece by piece until the server answers; the bytes sent by then and the answer's head."""
    sent = 0
    for piece in payload:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):  # the server closed: its answer is waiting
            break
        sent += len(piece)
    sock.settimeout(30)
    return sent, sock.recv(65536)


def _pieces(total: int, size: int, *, chunked: bool) -> Iterator[bytes]:
    for _ in range(total // size):
        data = b" " * size
        yield (f"{size:x}\r\n".encode() + data + b"\r\n") if chunked else data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_vai_serve_answers_413_before_a_50_mb_body_is_sent_whole(
    tmp_path: Path, start_server: Callable[..., Server], chunked: bool
) -> None:
    env = vai_env(tmp_path / "var")
    server = start_server(env)
    org = json.loads(
        subprocess.run(
            [VAI, "org", "create", "Big Co", "--owner-email", "big@example.com", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    total = 50 * 1024 * 1024
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {RUNS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {org['api_key']}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        sent, answer = _answer_once_readable(sock, _pieces(total, 256 * 1024, chunked=chunked))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body-too-large" in answer or b"content-length" in answer.lower()
    # The default 4 MiB limit, plus what the two sockets' kernel buffers hold on loopback (a few MB).
    assert sent < 16 * 1024 * 1024 < total, sent
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        assert http.get(RUNS, headers={"Authorization": f"Bearer {org['api_key']}"}).json()["items"] == []
    server.stop_cleanly()
