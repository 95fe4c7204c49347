"""``safe_request``: one outbound HTTP exchange that cannot be steered into the service's own network.

Every hop (the first request and each redirect) is parsed, resolved once and checked by ``ssrf.py``; the request
then goes to the checked address itself: the URL's host is replaced by the IP, the ``Host`` header and the TLS server
name (httpx's ``sni_hostname`` extension) keep the real name, and the certificate is verified against that name.
Nothing else resolves the name again, so a DNS answer that changes between check and connect cannot move the request.

Also: redirects are followed here, by hand (httpx's own following would connect before we could check), at most
``max_redirects``; proxy and TLS settings from the environment are ignored (``trust_env=False``); the body is read as
a stream and cut at ``max_bytes``; one deadline covers the whole exchange.
"""

from __future__ import annotations

import asyncio
import codecs
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import httpx

from virtuousai import __version__
from virtuousai.net.errors import (
    InvalidUrl,
    TooManyRedirects,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from virtuousai.net.ssrf import (
    Destination,
    DestinationPolicy,
    Resolver,
    SystemResolver,
    parse_target_url,
    resolve_destination,
)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = f"virtuousai/{__version__}"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that carry the caller's credentials: they must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


@dataclass(frozen=True)
class SafeResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes  # at most max_bytes, decoded from any Content-Encoding
    truncated: bool  # the server sent more than max_bytes
    url: str  # the final URL, with its host name (not the pinned address)
    elapsed_ms: float  # the whole exchange, all hops included
    redirects: tuple[str, ...] = field(default=())  # the URLs that answered with a redirect, in order
    encoding: str = "utf-8"  # from the Content-Type charset when it names a known codec

    @property
    def text(self) -> str:
        # errors="replace": a cut body may end inside a multi-byte character, and a server may lie about its charset.
        return self.content.decode(self.encoding, errors="replace")


async def safe_request(
    method: str,
    url: str | httpx.URL,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    follow_redirects: bool = True,
    max_redirects: int = MAX_REDIRECTS,
    policy: DestinationPolicy | None = None,
    resolver: Resolver | None = None,
    tls_context: ssl.SSLContext | None = None,
    credential_headers: Collection[str] = (),
) -> SafeResponse:
    """Send one request (following redirects by hand) to a destination that ``policy`` allows.

    ``timeout`` bounds the whole exchange: resolution, every hop and reading the body. ``tls_context`` replaces the
    default verification roots (tests with their own CA); verification itself is always on. The ``Host`` header is
    always the URL's. ``credential_headers`` names headers that carry credentials besides ``Authorization``,
    ``Cookie`` and ``Proxy-Authorization`` (a connection's ``X-Api-Key``): all of them are dropped when a redirect
    leaves the first URL's origin. Raises ``BlockedDestination``, ``InvalidUrl``, ``TooManyRedirects``,
    ``UpstreamUnreachable``, ``UpstreamTimeout`` or ``UpstreamProtocolError`` (all ``OutboundRequestError``).
    """
    policy = policy or DestinationPolicy()
    resolver = resolver or SystemResolver()
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(
                _Hop(
                    method.upper(),
                    parse_target_url(url),
                    httpx.Headers(headers),
                    content,
                    frozenset(_CREDENTIAL_HEADERS) | {name.lower() for name in credential_headers},
                ),
                policy=policy,
                resolver=resolver,
                timeout=timeout,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
                follow_redirects=follow_redirects,
                tls_context=tls_context,
                started=started,
            )
    except TimeoutError:
        raise UpstreamTimeout(f"no complete answer within {timeout:g}s") from None


@dataclass(frozen=True)
class _Hop:
    method: str
    url: httpx.URL
    headers: httpx.Headers
    content: bytes | None
    credential_headers: frozenset[str]  # lower-case names, dropped when the origin changes


async def _exchange(
    hop: _Hop,
    *,
    policy: DestinationPolicy,
    resolver: Resolver,
    timeout: float,
    max_bytes: int,
    max_redirects: int,
    follow_redirects: bool,
    tls_context: ssl.SSLContext | None,
    started: float,
) -> SafeResponse:
    redirects: list[str] = []
    async with httpx.AsyncClient(
        trust_env=False,  # no HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE from the environment
        follow_redirects=False,
        timeout=timeout,
        verify=tls_context if tls_context is not None else True,
        # No connection reuse: a pooled connection is keyed by IP, and reusing one verified for another host name
        # would skip verification of this one.
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": USER_AGENT},
    ) as client:
        while True:
            destination = await resolve_destination(hop.url, policy, resolver)
            response = await _send_pinned(client, hop, destination)
            try:
                location = response.headers.get("location")
                if not (follow_redirects and response.status_code in _REDIRECT_STATUSES and location):
                    content, truncated = await _read_capped(response, max_bytes)
                    return SafeResponse(
                        status_code=response.status_code,
                        headers=response.headers,
                        content=content,
                        truncated=truncated,
                        url=str(hop.url),
                        elapsed_ms=round((time.monotonic() - started) * 1000, 3),
                        redirects=tuple(redirects),
                        encoding=_known_codec(response.charset_encoding),
                    )
            finally:
                await response.aclose()
            redirects.append(str(hop.url))
            if len(redirects) > max_redirects:
                raise TooManyRedirects(f"more than {max_redirects} redirects (the last from host {destination.host!r})")
            hop = _redirected(hop, response.status_code, location)


async def _send_pinned(client: httpx.AsyncClient, hop: _Hop, destination: Destination) -> httpx.Response:
    """Send ``hop`` to the destination's checked addresses, in order, until one accepts the connection."""
    headers = httpx.Headers(hop.headers)
    headers["Host"] = destination.host_header
    extensions: dict[str, str] = {}
    if hop.url.scheme == "https" and not destination.is_literal:
        extensions["sni_hostname"] = destination.host
    failure: httpx.ConnectError | None = None
    for address in destination.addresses:
        request = client.build_request(
            hop.method,
            hop.url.copy_with(host=str(address)),
            headers=headers,
            content=hop.content,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:  # nothing was sent: the next address may accept
            failure = exc
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"host {destination.host!r} did not answer in time") from None
        except httpx.HTTPError as exc:  # its message may quote the server's headers: name only its type
            raise UpstreamProtocolError(
                f"host {destination.host!r} answered with invalid HTTP ({type(exc).__name__})"
            ) from None
    raise UpstreamUnreachable(_connect_failure_message(destination, failure))


def _connect_failure_message(destination: Destination, failure: BaseException | None) -> str:
    message = f"could not connect to {destination.host!r} port {destination.port}"
    cause = failure
    while cause is not None:  # httpx wraps the OS/TLS error; name the innermost cause, not its text
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{message}: TLS certificate verification failed ({cause.verify_message})"
        if isinstance(cause, ConnectionRefusedError):
            return f"{message}: connection refused"
        cause = cause.__cause__ or cause.__context__
    return message


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """The body, up to ``max_bytes``; stop reading (and say so) as soon as the server sends more."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            if size + len(chunk) > max_bytes:
                chunks.append(chunk[: max_bytes - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    except httpx.TimeoutException:
        raise UpstreamTimeout("the response body did not arrive in time") from None
    except httpx.HTTPError as exc:
        raise UpstreamProtocolError(f"reading the response body failed: {type(exc).__name__}") from None
    return b"".join(chunks), False


def _redirected(hop: _Hop, status_code: int, location: str) -> _Hop:
    """The next hop for a redirect, as browsers (and httpx) do it: 303 (and 301/302 after POST) become GET."""
    try:
        next_url = parse_target_url(hop.url.join(location))
    except (httpx.InvalidURL, ValueError):
        raise InvalidUrl("the redirect's Location is not a valid URL") from None
    method, content = hop.method, hop.content
    headers = httpx.Headers(hop.headers)
    if (status_code == 303 and method != "HEAD") or (status_code in (301, 302) and method == "POST"):
        method, content = "GET", None
        for name in ("content-type", "content-length", "transfer-encoding"):
            headers.pop(name, None)
    if _origin(next_url) != _origin(hop.url):
        for name in hop.credential_headers:
            headers.pop(name, None)
    return _Hop(method, next_url, headers, content, hop.credential_headers)


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port


def _known_codec(charset: str | None) -> str:
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"
