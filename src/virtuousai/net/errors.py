"""Typed errors of the outbound HTTP client.

Every message names the reason and at most the host: never the full URL (its query string may carry a token) and
never a header. ``retryable`` tells the runtime whether another attempt could succeed: a refused destination or a
redirect loop will be refused again, an unreachable or slow server may recover.
"""

from __future__ import annotations

from virtuousai.errors import VaiError


class OutboundRequestError(VaiError):
    """Base of every error raised by ``virtuousai.net``."""

    status, type_slug, title = 502, "outbound-request-failed", "Outbound request failed"
    retryable = True


class InvalidUrl(OutboundRequestError):
    """The URL cannot be parsed, or has no host."""

    status, type_slug, title = 400, "invalid-url", "Invalid URL"
    retryable = False


class BlockedDestination(OutboundRequestError):
    """The destination is refused by the policy: scheme, credentials in the URL, or a non-public address."""

    status, type_slug, title = 400, "blocked-destination", "Destination blocked"
    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(f"destination blocked: {reason}")
        self.reason = reason


class TooManyRedirects(OutboundRequestError):
    status, type_slug, title = 502, "too-many-redirects", "Too many redirects"
    retryable = False


class UpstreamUnreachable(OutboundRequestError):
    """The host could not be resolved or connected to (including a failed TLS handshake)."""

    status, type_slug, title = 502, "upstream-unreachable", "Upstream unreachable"


class UpstreamTimeout(OutboundRequestError):
    status, type_slug, title = 504, "upstream-timeout", "Upstream timed out"


class UpstreamProtocolError(OutboundRequestError):
    """The server answered something that is not valid HTTP, or closed the connection mid-exchange."""

    status, type_slug, title = 502, "upstream-protocol-error", "Upstream protocol error"
