"""The destination policy on its own: URL rules, address rules, numeric hosts, one-time resolution.

Nothing here opens a connection: ``check`` parses and resolves exactly as ``safe_request`` does for every hop, and
stops there. ``test_safe_request.py`` shows the same refusals end to end against loopback canaries.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.net.helpers import ScriptedResolver
from virtuousai.net import (
    CLOUD_METADATA_ADDRESSES,
    BlockedDestination,
    Destination,
    DestinationPolicy,
    InvalidUrl,
    Resolver,
    SystemResolver,
    literal_address,
    parse_target_url,
    refusal_without_dns,
    resolve_destination,
)

DEFAULT = DestinationPolicy()
LOOPBACK_ALLOWED = DestinationPolicy(allow_loopback=True)


async def check(url: str, policy: DestinationPolicy = DEFAULT, resolver: Resolver | None = None) -> Destination:
    return await resolve_destination(parse_target_url(url), policy, resolver or SystemResolver())


# The SSRF matrix, and the phrase each refusal must name.
SSRF_MATRIX = [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped"),
    ("http://2130706433/", "127.0.0.1 is a loopback"),
    ("http://0x7f000001/", "127.0.0.1 is a loopback"),
    ("http://100.100.100.200/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:70/_SET%20x", "scheme 'gopher'"),
]

MORE_REFUSED = [
    ("http://127.1/", "127.0.0.1 is a loopback"),
    ("http://0177.1/", "127.0.0.1 is a loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.1:8080/", "private"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:8.8.8.8]/", "IPv4-mapped"),
    ("http://[2002:a9fe:a9fe::]/", "6to4 address embedding 169.254.169.254"),
    ("http://[64:ff9b::7f00:1]/", "NAT64 address embedding 127.0.0.1"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://168.63.129.16/", "metadata"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("http://user:secret@example.com/", "credentials"),
    ("http://example.com@127.0.0.1/", "credentials"),
]


@pytest.mark.parametrize(("url", "named_reason"), SSRF_MATRIX + MORE_REFUSED)
async def test_refuses_every_non_public_destination(url: str, named_reason: str) -> None:
    with pytest.raises(BlockedDestination) as refused:
        await check(url)
    assert named_reason in refused.value.reason


async def test_refusal_message_does_not_echo_credentials_or_query() -> None:
    with pytest.raises(BlockedDestination) as refused:
        await check("http://admin:hunter2@127.0.0.1/?token=s3cret")
    with pytest.raises(BlockedDestination) as refused_query:
        await check("http://127.0.0.1/?token=s3cret")
    for message in (str(refused.value), str(refused_query.value)):
        assert "hunter2" not in message and "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://1.2.3.4.5/",
        "http://0x7g.1/",
        "http://0177.0.0.1/",  # httpx refuses dotted quads with leading zeros (octal to getaddrinfo)
        "http:///path",
        "http://[::1/",
    ],
)
async def test_malformed_or_hostless_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidUrl):
        await check(url)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://8.8.8.8/", "8.8.8.8"),
        ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
        ("http://134744072/", "8.8.8.8"),  # numeric forms are judged as the address they denote
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),  # NAT64 of a public address
    ],
)
async def test_allows_public_addresses(url: str, address: str) -> None:
    destination = await check(url)
    assert destination.addresses == (ipaddress.ip_address(address),)


async def test_a_name_is_resolved_once_and_pinned_to_its_answers() -> None:
    resolver = ScriptedResolver({"api.example.com": [["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]]})
    destination = await check("https://API.example.com./v1?x=1", resolver=resolver)
    assert resolver.calls == ["api.example.com"]
    assert destination.host == "api.example.com"
    assert destination.port == 443
    assert [str(a) for a in destination.addresses] == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.goog.", "metadata", "instance-data"])
async def test_a_metadata_host_name_is_refused_by_name_whatever_dns_answers(host: str) -> None:
    resolver = ScriptedResolver({host.lower().rstrip("."): [["93.184.215.14"]]})
    with pytest.raises(BlockedDestination, match="a cloud metadata host"):
        await check(f"http://{host}/computeMetadata/v1/", LOOPBACK_ALLOWED, resolver)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/", True),
        ("http://10.0.0.7/", True),
        ("http://0x0a000007/", True),
        ("http://[fe80::1]/", True),
        ("http://[::ffff:127.0.0.1]/", True),  # never allowed, loopback inside or not
        ("http://0.0.0.0/", True),
        ("http://metadata.google.internal/", True),
        ("http://127.0.0.1:8080/", False),  # left to the policy (allow_loopback, tests' own servers)
        ("http://localhost/", False),  # a name: judged when sent
        ("http://example.com/", False),
        ("http://93.184.215.14/", False),
    ],
)
def test_what_can_be_refused_before_any_dns(url: str, refused: bool) -> None:
    assert (refusal_without_dns(parse_target_url(url)) is not None) is refused


async def test_a_name_with_any_non_public_answer_is_refused() -> None:
    resolver = ScriptedResolver({"mixed.example": [["93.184.215.14", "10.0.0.7"]]})
    with pytest.raises(BlockedDestination, match=r"'mixed.example' resolves to 10.0.0.7, a private address"):
        await check("http://mixed.example/", resolver=resolver)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/", "http://127.9.9.9/", "http://[::1]/", "http://localhost/"])
async def test_allow_loopback_allows_loopback(url: str) -> None:
    destination = await check(url, LOOPBACK_ALLOWED)
    assert all(address.is_loopback for address in destination.addresses)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
    ],
)
async def test_allow_loopback_allows_nothing_else(url: str) -> None:
    with pytest.raises(BlockedDestination):
        await check(url, LOOPBACK_ALLOWED)


async def test_allowed_addresses_allow_exactly_those_addresses() -> None:
    policy = DestinationPolicy(allowed_addresses=frozenset({ipaddress.ip_address("127.0.0.2")}))
    assert (await check("http://127.0.0.2:9/", policy)).addresses == (ipaddress.ip_address("127.0.0.2"),)
    with pytest.raises(BlockedDestination):
        await check("http://127.0.0.1:9/", policy)


@pytest.mark.parametrize("address", sorted(CLOUD_METADATA_ADDRESSES, key=str))
def test_metadata_addresses_can_never_be_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    policy = DestinationPolicy(allow_loopback=True, allowed_addresses=frozenset({address}))
    assert policy.refusal_reason(address) == "a cloud metadata address"


@given(st.ip_addresses())
def test_every_address_that_is_not_global_is_refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if not address.is_global:
        assert DEFAULT.refusal_reason(address) is not None
    if not address.is_global and not address.is_loopback:
        assert LOOPBACK_ALLOWED.refusal_reason(address) is not None


@given(st.ip_addresses(v=4))
def test_ipv6_forms_of_a_refused_ipv4_address_are_refused(address: ipaddress.IPv4Address) -> None:
    if DEFAULT.refusal_reason(address) is None:
        return
    packed = int(address)
    for embedding in (
        ipaddress.IPv6Address(f"::ffff:{address}"),  # IPv4-mapped
        ipaddress.IPv6Address((0x2002 << 112) | (packed << 80)),  # 6to4
        ipaddress.IPv6Address((0x64FF9B << 96) | packed),  # NAT64 well-known prefix
    ):
        assert DEFAULT.refusal_reason(embedding) is not None, embedding


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_numeric_hosts_are_read_as_getaddrinfo_reads_them(number: int) -> None:
    expected = ipaddress.IPv4Address(number)
    assert literal_address(str(number)) == expected
    assert literal_address(hex(number)) == expected
    assert literal_address(hex(number).upper().replace("0X", "0x")) == expected
    assert literal_address(str(expected)) == expected


@pytest.mark.parametrize("host", ["example.com", "deadbeef.cafe", "xn--bcher-kva.de", "1.2.3.example"])
def test_names_are_not_numeric_hosts(host: str) -> None:
    assert literal_address(host) is None
