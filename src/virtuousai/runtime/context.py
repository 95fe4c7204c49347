"""What an action kind sees while it runs: ``ActionContext``.

The runtime builds one per attempt. Kinds never touch the database or the worker directly; everything they may
do goes through this object, so the same kind runs the same way from the API, an automation, an agent or cron.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtuousai.store.tenant import TenantContext


class Cancelled(Exception):
    """Raised by ``CancellationToken.raise_if_cancelled`` at a safe point; the run ends CANCELLED."""


class CancellationToken:
    """Cooperative cancellation, usable from async code and from worker threads (sync kinds)."""

    def __init__(self) -> None:
        self._thread_event = threading.Event()
        self._async_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reason: str | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def cancelled(self) -> bool:
        return self._thread_event.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        if self._thread_event.is_set():
            return
        self.reason = reason
        self._thread_event.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._async_event.set)
        else:
            self._async_event.set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled(self.reason or "cancelled")

    async def wait(self) -> None:
        await self._async_event.wait()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early (and raising ``Cancelled``) if the run is cancelled."""
        try:
            await asyncio.wait_for(self._async_event.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Cancelled(self.reason or "cancelled")


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection with its secrets decrypted. Exists only inside a running action; never logged or stored."""

    id: str
    slug: str | None
    provider: str
    config: Mapping[str, Any]
    secrets: Mapping[str, Any] = field(repr=False)


ConnectionResolver = Callable[[str], Coroutine[Any, Any, ResolvedConnection]]
# Gives a worker the resolver of one run's tenant (``connections/resolver.py::StoredConnections``).
ConnectionResolverFactory = Callable[[TenantContext], ConnectionResolver]
EventEmitter = Callable[[str, Mapping[str, Any]], Coroutine[Any, Any, None]]


async def no_connections(ref: str) -> ResolvedConnection:
    raise LookupError(f"connection {ref!r}: no connection resolver in this context")


async def _discard_event(kind: str, data: Mapping[str, Any]) -> None:
    return None


@dataclass
class ActionContext:
    run_id: str
    tenant: TenantContext
    attempt: int = 1
    cancel: CancellationToken = field(default_factory=CancellationToken)
    data_dir: Path = Path("./var")
    # Runtime knobs a kind may need (e.g. "http_allow_loopback" for tests' own servers). Never secrets.
    options: Mapping[str, Any] = field(default_factory=dict)
    _emit: EventEmitter = _discard_event
    _resolve: ConnectionResolver = no_connections
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts: pass it to systems that accept one, so a retried effect is not applied twice."""
        return self.run_id

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    async def emit(self, kind: str, data: Mapping[str, Any]) -> None:
        """Record a progress event on the run (stored, and streamed over SSE)."""
        await self._emit(kind, data)

    def emit_from_thread(self, kind: str, data: Mapping[str, Any]) -> None:
        """``emit`` for sync kinds running in a worker thread."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._emit(kind, data), self._loop).result(timeout=30)

    async def connection(self, ref: str) -> ResolvedConnection:
        """Resolve an id, ``slug:<slug>`` or ``provider:<provider>`` in this run's organization, decrypted."""
        return await self._resolve(ref)

    def connection_from_thread(self, ref: str) -> ResolvedConnection:
        if self._loop is None:
            raise RuntimeError("no event loop bound to this context")
        return asyncio.run_coroutine_threadsafe(self._resolve(ref), self._loop).result(timeout=60)
