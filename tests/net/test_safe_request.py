"""``safe_request`` end to end against real servers on 127.0.0.x.

A "public" host is a name that an injected resolver maps to 127.0.0.2 (or .3), and the policy allows exactly that
address; 127.0.0.1 stays refused and plays the internal service (the canary). No traffic leaves 127.0.0.1/8.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import eventually
from tests.net.helpers import (
    RecordedRequest,
    RecordingServer,
    Reply,
    Responder,
    ScriptedResolver,
    ServerFactory,
)
from virtuousai.net import (
    BlockedDestination,
    DestinationPolicy,
    TooManyRedirects,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
    safe_request,
)

PUBLIC = "127.0.0.2"  # stands in for a public address: tests allow exactly this one
OTHER_PUBLIC = "127.0.0.3"
ONLY_PUBLIC = DestinationPolicy(allowed_addresses=frozenset({ipaddress.ip_address(PUBLIC)}))
BOTH_PUBLIC = DestinationPolicy(allowed_addresses=frozenset(ipaddress.ip_address(a) for a in (PUBLIC, OTHER_PUBLIC)))


def redirect_to(location: str, status: int = 302) -> Reply:
    return Reply(status=status, headers={"Location": location}, body=b"")


# -- the SSRF matrix, end to end: nothing reaches a server on loopback ------------------------------------------


@pytest.mark.parametrize(
    "url_template",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f000001:{port}/",
        "http://127.1:{port}/",
        "http://0.0.0.0:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://[::1]:{port}/",
    ],
)
async def test_loopback_forms_are_refused_and_the_canary_hears_nothing(serve: ServerFactory, url_template: str) -> None:
    canary = serve(host="127.0.0.1")
    canary_v6 = serve(host="::1", port=canary.port)
    with pytest.raises(BlockedDestination):
        await safe_request("GET", url_template.format(port=canary.port))
    assert canary.requests == [] and canary_v6.requests == []


async def test_the_canary_does_hear_a_request_that_is_allowed(serve: ServerFactory) -> None:
    # The control for the test above: the same request with loopback allowed reaches the canary.
    canary = serve(host="127.0.0.1")
    response = await safe_request("GET", canary.url("/hello"), policy=DestinationPolicy(allow_loopback=True))
    assert response.status_code == 200 and response.text == "ok"
    assert [r.path for r in canary.requests] == ["/hello"]


# -- redirects ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location_template",
    [
        "http://127.0.0.1:{canary}/steal",
        "http://localhost:{canary}/steal",
        "http://2130706433:{canary}/steal",
        "http://[::ffff:127.0.0.1]:{canary}/steal",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{canary}/_x",
        "http://user:pw@127.0.0.1:{canary}/",
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused(serve: ServerFactory, location_template: str) -> None:
    canary = serve(host="127.0.0.1")
    first = serve(lambda r: redirect_to(location_template.format(canary=canary.port)), host=PUBLIC)
    with pytest.raises(BlockedDestination):
        await safe_request("GET", first.url("/start"), policy=ONLY_PUBLIC)
    assert len(first.requests) == 1
    assert canary.requests == []


async def test_redirects_are_followed_and_reported(serve: ServerFactory) -> None:
    def respond(request: RecordedRequest) -> Reply:
        return redirect_to("/final") if request.path == "/start" else Reply(body=b"arrived")

    server = serve(respond, host=PUBLIC)
    response = await safe_request("GET", server.url("/start"), policy=ONLY_PUBLIC)
    assert response.text == "arrived"
    assert response.url == server.url("/final")
    assert response.redirects == (server.url("/start"),)


def chain(length: int) -> Responder:
    def respond(request: RecordedRequest) -> Reply:
        step = int(request.path.rsplit("/", 1)[1])
        return redirect_to(f"/hop/{step + 1}") if step < length else Reply(body=b"end")

    return respond


async def test_five_redirects_are_followed(serve: ServerFactory) -> None:
    server = serve(chain(5), host=PUBLIC)
    response = await safe_request("GET", server.url("/hop/0"), policy=ONLY_PUBLIC)
    assert response.text == "end"
    assert len(response.redirects) == 5 and len(server.requests) == 6


async def test_a_sixth_redirect_is_refused(serve: ServerFactory) -> None:
    server = serve(chain(6), host=PUBLIC)
    with pytest.raises(TooManyRedirects, match="more than 5 redirects"):
        await safe_request("GET", server.url("/hop/0"), policy=ONLY_PUBLIC)
    assert [r.path for r in server.requests] == [f"/hop/{n}" for n in range(6)]


async def test_redirects_are_not_followed_when_disabled(serve: ServerFactory) -> None:
    server = serve(lambda r: redirect_to("http://127.0.0.1:1/"), host=PUBLIC)
    response = await safe_request("GET", server.url(), policy=ONLY_PUBLIC, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:1/"


async def test_credentials_do_not_follow_a_redirect_to_another_origin(serve: ServerFactory) -> None:
    other = serve(host=OTHER_PUBLIC)
    first = serve(
        lambda r: redirect_to("/same") if r.path == "/start" else redirect_to(other.url("/other")),
        host=PUBLIC,
    )
    headers = {"Authorization": "Bearer s3cret", "Cookie": "session=1", "X-Trace": "t-1"}
    await safe_request("GET", first.url("/start"), headers=headers, policy=BOTH_PUBLIC)
    assert first.requests[1].path == "/same" and first.requests[1].headers["authorization"] == "Bearer s3cret"
    (received,) = other.requests
    assert "authorization" not in received.headers and "cookie" not in received.headers
    assert received.headers["x-trace"] == "t-1"


@pytest.mark.parametrize(("status", "method", "body"), [(303, "GET", b""), (307, "POST", b'{"a":1}')])
async def test_redirect_status_decides_method_and_body(
    serve: ServerFactory, status: int, method: str, body: bytes
) -> None:
    server = serve(lambda r: redirect_to("/next", status) if r.path == "/start" else Reply(), host=PUBLIC)
    await safe_request(
        "POST",
        server.url("/start"),
        headers={"Content-Type": "application/json"},
        content=b'{"a":1}',
        policy=ONLY_PUBLIC,
    )
    followed = server.requests[1]
    assert (followed.method, followed.body) == (method, body)


# -- one resolution per hop, and the connection goes to its answer -----------------------------------------------


def _bind_same_port(serve: ServerFactory, canary: RecordingServer, host: str) -> RecordingServer:
    return serve(lambda r: Reply(body=b"public"), host=host, port=canary.port)


async def test_dns_rebinding_cannot_move_the_connection(serve: ServerFactory) -> None:
    canary = serve(host="127.0.0.1")
    public = _bind_same_port(serve, canary, PUBLIC)
    resolver = ScriptedResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    response = await safe_request("GET", f"http://rebind.test:{canary.port}/", policy=ONLY_PUBLIC, resolver=resolver)
    assert response.text == "public"
    assert resolver.calls == ["rebind.test"]
    assert public.requests[0].headers["host"] == f"rebind.test:{canary.port}"
    assert canary.requests == []


async def test_each_redirect_hop_is_resolved_and_checked_again(serve: ServerFactory) -> None:
    canary = serve(host="127.0.0.1")
    public = serve(lambda r: redirect_to("/again"), host=PUBLIC, port=canary.port)
    resolver = ScriptedResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    with pytest.raises(BlockedDestination, match=re.escape("'rebind.test' resolves to 127.0.0.1, a loopback address")):
        await safe_request("GET", f"http://rebind.test:{canary.port}/", policy=ONLY_PUBLIC, resolver=resolver)
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert len(public.requests) == 1 and canary.requests == []


# -- environment, body cap, failures -----------------------------------------------------------------------------


async def test_proxy_settings_in_the_environment_are_ignored(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_canary = serve(host="127.0.0.1")
    target = serve(host=PUBLIC)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_canary.url())
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    # Control: an ordinary client does obey these variables and goes through the canary.
    async with httpx.AsyncClient() as ordinary:
        await ordinary.get(target.url("/via-proxy"))
    assert len(proxy_canary.requests) == 1 and target.requests == []

    response = await safe_request("GET", target.url("/direct"), policy=ONLY_PUBLIC)
    assert response.status_code == 200
    assert [r.path for r in target.requests] == ["/direct"]
    assert len(proxy_canary.requests) == 1


@pytest.mark.parametrize(("size", "truncated"), [(100_000, True), (1000, False), (999, False)])
async def test_the_body_is_capped(serve: ServerFactory, size: int, truncated: bool) -> None:
    server = serve(lambda r: Reply(body=b"x" * size), host=PUBLIC)
    response = await safe_request("GET", server.url(), policy=ONLY_PUBLIC, max_bytes=1000)
    assert len(response.content) == min(size, 1000)
    assert response.truncated is truncated


async def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind((PUBLIC, 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamUnreachable, match="connection refused"):
        await safe_request("GET", f"http://{PUBLIC}:{port}/", policy=ONLY_PUBLIC)


async def test_a_server_that_never_answers_times_out(serve: ServerFactory) -> None:
    release = threading.Event()
    server = serve(lambda r: (release.wait(10), Reply())[1], host=PUBLIC)
    try:
        with pytest.raises(UpstreamTimeout):
            await safe_request("GET", server.url(), policy=ONLY_PUBLIC, timeout=0.3)
        await eventually(lambda: len(server.requests) == 1, timeout=5, what="the request to reach the server")
    finally:
        release.set()


async def test_a_malformed_redirect_location_is_a_protocol_error(serve: ServerFactory) -> None:
    server = serve(lambda r: redirect_to("http://[::1"), host=PUBLIC)
    with pytest.raises(UpstreamProtocolError, match="invalid HTTP"):
        await safe_request("GET", server.url(), policy=ONLY_PUBLIC)


# -- TLS: verified against the real host name while connected to the pinned address ----------------------------


def _self_signed(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cadata=cert_pem.decode())
    return server_context, client_context


async def test_tls_is_verified_against_the_host_name_not_the_pinned_address(
    serve: ServerFactory, tmp_path: Path
) -> None:
    server_context, client_context = _self_signed(tmp_path, "pinned.test")
    server_names: list[str | None] = []

    def remember_server_name(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        server_names.append(name)

    server_context.sni_callback = remember_server_name
    server = serve(
        lambda r: Reply(body=json.dumps({"host": r.headers["host"]}).encode()), host=PUBLIC, tls_context=server_context
    )
    resolver = ScriptedResolver({"pinned.test": [[PUBLIC]], "impostor.test": [[PUBLIC]]})

    response = await safe_request(
        "GET", f"https://pinned.test:{server.port}/", policy=ONLY_PUBLIC, resolver=resolver, tls_context=client_context
    )
    assert json.loads(response.content) == {"host": f"pinned.test:{server.port}"}
    assert server_names == ["pinned.test"]

    # Same address, other name: the certificate does not match it, so the handshake must fail.
    with pytest.raises(UpstreamUnreachable, match="TLS certificate verification failed"):
        await safe_request(
            "GET",
            f"https://impostor.test:{server.port}/",
            policy=ONLY_PUBLIC,
            resolver=resolver,
            tls_context=client_context,
        )
    assert len(server.requests) == 1
