"""Where outbound requests may go: the URL rules, the address policy and the one-time resolution.

An outbound request made on behalf of a user (an ``http_request`` action, a connection test, a fetched page) must not
reach the service's own network: loopback, private ranges, link-local, the cloud metadata endpoints. The rules:

1. Only ``http`` and ``https``; no credentials in the URL (``http://public@127.0.0.1`` tricks people, not us, but
   there is no reason to accept it).
2. A numeric host is normalised the way ``getaddrinfo`` would read it (``2130706433``, ``0x7f000001``, ``0177.1`` are
   all 127.0.0.1), so it is judged as the address it is and never sent to DNS.
3. A name is resolved **once**; if *any* answer is not globally routable the destination is refused (a name with one
   public and one private answer is a rebinding setup). The caller then connects to these exact addresses, so a second
   DNS answer can never change where the bytes go.

``DestinationPolicy`` may allow loopback (``allow_loopback``, for tests' own servers) or exact addresses
(``allowed_addresses``, so a test can allow its first server and nothing else); neither can ever allow the metadata
addresses, the unspecified address, multicast or IPv4-mapped IPv6.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from virtuousai.net.errors import BlockedDestination, InvalidUrl, UpstreamUnreachable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata and platform endpoints: AWS/GCP/Azure/Oracle (169.254.169.254), AWS ECS task metadata, AWS DNS,
# AWS IPv6 IMDS, Alibaba Cloud, and Azure's WireServer (a public address, so only this list catches it).
CLOUD_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)

# Host names of the same endpoints (GCP's, and AWS's EC2-Classic name): refused by name, before any DNS.
CLOUD_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")  # Python 3.11 lists only parts of it
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

# A host whose last label is a number (decimal, or 0x… hex) is an IPv4 address to getaddrinfo and to browsers.
_NUMERIC_LAST_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def non_global_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, as a phrase ("a loopback address"), or None if it is one.

    Stricter than ``ipaddress``'s ``is_global``: it also refuses multicast, reserved, site-local, the metadata
    addresses, every IPv4-mapped IPv6 address, and 6to4/NAT64 addresses that embed a non-public IPv4 address.
    """
    if address in CLOUD_METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded_reason = _ipv6_embedding_reason(address)
        if embedded_reason is not None:
            return embedded_reason or None
        if address.is_site_local:
            return "a site-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "in the shared address space 100.64.0.0/10 (CGNAT)"
    if address in _UNIQUE_LOCAL:
        return "a unique-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if address in _IETF_PROTOCOL_ASSIGNMENTS:
        return "an IETF protocol assignment address"
    if not address.is_global:
        return "not globally routable"
    return None


def _ipv6_embedding_reason(address: ipaddress.IPv6Address) -> str | None:
    """For IPv6 forms that carry an IPv4 address: a reason, "" if the form is acceptable, None if not such a form."""
    if address.ipv4_mapped is not None:
        # Refused whatever it maps to: no public name needs one, and dual-stack sockets connect to the IPv4 address.
        mapped = address.ipv4_mapped
        inner = non_global_reason(mapped)
        return f"an IPv4-mapped IPv6 address ({mapped} is {inner})" if inner else "an IPv4-mapped IPv6 address"
    if address.teredo is not None:
        return "a Teredo tunnel address"
    if address.sixtofour is not None:
        inner = non_global_reason(address.sixtofour)
        return f"a 6to4 address embedding {address.sixtofour} ({inner})" if inner else None
    if address in _NAT64_WELL_KNOWN:
        # Reachable only through a NAT64 gateway, which connects to the embedded IPv4 address: judge that one.
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        inner = non_global_reason(embedded)
        return f"a NAT64 address embedding {embedded} ({inner})" if inner else ""
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses outbound requests may reach. The default refuses everything that is not public.

    ``allow_loopback`` and ``allowed_addresses`` exist for tests' own servers on 127.0.0.x; they never allow the
    metadata addresses, the unspecified address, multicast or IPv4-mapped IPv6.
    """

    allow_loopback: bool = False
    allowed_addresses: frozenset[IPAddress] = frozenset()

    def refusal_reason(self, address: IPAddress) -> str | None:
        """Why this policy refuses ``address``, or None if it may be contacted."""
        reason = non_global_reason(address)
        if reason is None or _never_allowed(address):
            return reason
        if address in self.allowed_addresses:
            return None
        if self.allow_loopback and address.is_loopback:
            return None
        return reason


def _never_allowed(address: IPAddress) -> bool:
    return (
        address in CLOUD_METADATA_ADDRESSES
        or address.is_unspecified
        or address.is_multicast
        or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None)
    )


def parse_target_url(url: str | httpx.URL) -> httpx.URL:
    """Parse and check the parts of a URL that need no DNS: scheme, credentials, host present.

    The returned ``httpx.URL`` is the one that is then resolved and sent, so the check and the request can never read
    the URL differently.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidUrl("not a valid URL") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        scheme = parsed.scheme[:20] or "(none)"
        raise BlockedDestination(f"scheme {scheme!r} is not allowed (only http and https)")
    if parsed.userinfo:
        raise BlockedDestination("credentials in the URL are not allowed (send an Authorization header instead)")
    if not parsed.raw_host:
        raise InvalidUrl("the URL has no host")
    return parsed


def literal_address(host: str) -> IPAddress | None:
    """The address a numeric host denotes, read as ``getaddrinfo`` reads it, or None for a name.

    ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` are all 127.0.0.1. A host that ends in a number but
    is not a valid IPv4 address (``1.2.3.4.5``) is refused rather than sent to DNS.
    """
    bare = host.rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not _NUMERIC_LAST_LABEL.fullmatch(bare.rsplit(".", 1)[-1]):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        raise InvalidUrl(f"{host[:255]!r} looks numeric but is not a valid IPv4 address") from None


# The most any deployment allows (loopback, for tests' own servers): what it refuses, every deployment refuses.
_MOST_ALLOWED = DestinationPolicy(allow_loopback=True)


def refusal_without_dns(url: httpx.URL) -> str | None:
    """Why ``url`` (from ``parse_target_url``) can be refused before any DNS whatever this deployment allows, or None:
    a cloud metadata host name, or a literal address that is not public (a loopback address is left to the policy,
    which allows it for tests' own servers). What a run's inputs say can be refused when the run is created, so no
    one is asked to approve a request that could never be sent; names are judged when it is sent."""
    host = url.raw_host.decode("ascii").rstrip(".").lower()
    try:
        return _refusal(host, literal_address(host), _MOST_ALLOWED)
    except InvalidUrl as exc:
        return exc.detail


def _refusal(host: str, literal: IPAddress | None, policy: DestinationPolicy) -> str | None:
    """What needs no DNS to refuse: a metadata host name, or a literal address ``policy`` refuses."""
    if host.lower() in CLOUD_METADATA_HOSTS:
        return f"{host!r} is a cloud metadata host"
    reason = None if literal is None else policy.refusal_reason(literal)
    return None if reason is None else f"{literal} is {reason}"


class Resolver(Protocol):
    """Turns a host name into addresses. Injectable so tests can play DNS (including a rebinding DNS)."""

    async def resolve(self, host: str, port: int) -> Sequence[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``, run by the event loop in a thread)."""

    async def resolve(self, host: str, port: int) -> Sequence[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise UpstreamUnreachable(f"could not resolve host {host!r}") from None
        addresses: list[IPAddress] = []
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]))
            if address not in addresses:
                addresses.append(address)
        return addresses


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses it resolved to (all allowed). Connect to these, never to the name."""

    url: httpx.URL
    host: str  # ASCII (IDNA) form, without a trailing dot: the TLS server name
    port: int
    addresses: tuple[IPAddress, ...]
    is_literal: bool

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")


async def resolve_destination(url: httpx.URL, policy: DestinationPolicy, resolver: Resolver) -> Destination:
    """Resolve ``url``'s host once and check every answer against ``policy``; raise ``BlockedDestination`` if any fails.

    ``url`` must come from ``parse_target_url``.
    """
    host = url.raw_host.decode("ascii").rstrip(".")
    port = url.port or DEFAULT_PORTS[url.scheme]
    literal = literal_address(host)
    refusal = _refusal(host, literal, policy)
    if refusal is not None:
        raise BlockedDestination(refusal)
    if literal is not None:
        return Destination(url=url, host=host, port=port, addresses=(literal,), is_literal=True)

    addresses = tuple(await resolver.resolve(host, port))
    if not addresses:
        raise UpstreamUnreachable(f"could not resolve host {host!r}")
    for address in addresses:
        reason = policy.refusal_reason(address)
        if reason is not None:
            raise BlockedDestination(f"{host!r} resolves to {address}, {reason}")
    return Destination(url=url, host=host, port=port, addresses=addresses, is_literal=False)
