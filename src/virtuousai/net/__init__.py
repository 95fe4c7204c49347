"""Outbound HTTP that cannot be steered into the service's own network (SSRF-safe).

Use ``safe_request`` for every request made on a user's behalf (the ``http_request`` action, connection tests,
fetched pages). ``DestinationPolicy`` says which addresses it may reach; the default allows public addresses only.
"""

from virtuousai.net.client import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, MAX_REDIRECTS, SafeResponse, safe_request
from virtuousai.net.errors import (
    BlockedDestination,
    InvalidUrl,
    OutboundRequestError,
    TooManyRedirects,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from virtuousai.net.ssrf import (
    CLOUD_METADATA_ADDRESSES,
    CLOUD_METADATA_HOSTS,
    Destination,
    DestinationPolicy,
    IPAddress,
    Resolver,
    SystemResolver,
    literal_address,
    non_global_reason,
    parse_target_url,
    refusal_without_dns,
    resolve_destination,
)

__all__ = [
    "CLOUD_METADATA_ADDRESSES",
    "CLOUD_METADATA_HOSTS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "MAX_REDIRECTS",
    "BlockedDestination",
    "Destination",
    "DestinationPolicy",
    "IPAddress",
    "InvalidUrl",
    "OutboundRequestError",
    "Resolver",
    "SafeResponse",
    "SystemResolver",
    "TooManyRedirects",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "literal_address",
    "non_global_reason",
    "parse_target_url",
    "refusal_without_dns",
    "resolve_destination",
    "safe_request",
]
