"""What the outbound kinds (``http_request``, ``web_search``, ``fetch_page``) share: the destination policy from the
run's options, cancellation of an awaited request, a typed tool error, and resolving a connection of one provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from virtuousai.errors import NotFound
from virtuousai.net import DestinationPolicy
from virtuousai.runtime.context import ActionContext, CancellationToken, Cancelled, ResolvedConnection

# The ActionContext.options key the runtime fills from Settings.http_allow_loopback (tests' own servers only).
ALLOW_LOOPBACK_OPTION = "http_allow_loopback"

REDACTED = "[redacted]"

T = TypeVar("T")


class ToolFailed(Exception):
    """A tool's own failure: ``error_type`` is what the run records as the error's type; ``retryable`` whether
    another attempt could succeed (the runtime reads both)."""

    def __init__(self, error_type: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


def destination_policy(ctx: ActionContext) -> DestinationPolicy:
    return DestinationPolicy(allow_loopback=bool(ctx.options.get(ALLOW_LOOPBACK_OPTION, False)))


async def connection_of(ctx: ActionContext, ref: str, provider: str) -> ResolvedConnection:
    """The run's connection ``ref``, which must be one of ``provider``; a clear, final error otherwise."""
    try:
        connection = await ctx.connection(ref)
    except (NotFound, LookupError):
        message = f"no connection {ref!r} in this organization"
        if ref.startswith("provider:"):
            provider_slug = ref.removeprefix("provider:")
            message += f" ({ref} names the organization's default {provider_slug} connection: one with is_default)"
        raise ToolFailed("connection_not_found", message) from None
    if connection.provider != provider:
        message = f"connection {ref!r} is a {connection.provider!r} connection; this tool needs a {provider!r} one"
        raise ToolFailed("wrong_provider", message)
    return connection


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` (a server that echoes a credential must not put it in the output)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


async def unless_cancelled(token: CancellationToken, work: Awaitable[T]) -> T:
    """Await ``work``, abandoning it (and raising ``Cancelled``) as soon as the run is cancelled."""
    work_task = asyncio.ensure_future(work)
    cancelled_task = asyncio.ensure_future(token.wait())
    try:
        await asyncio.wait({work_task, cancelled_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled_task.cancel()
        if not work_task.done():
            work_task.cancel()
            # Let the request unwind (close its connection) before the run moves on.
            await asyncio.gather(work_task, return_exceptions=True)
    if work_task.done() and not work_task.cancelled():
        return work_task.result()
    raise Cancelled(token.reason or "cancelled")
