"""What an action kind sees while it runs: ``ActionContext``.

The runtime builds one per attempt. Kinds never touch the database or the worker directly; everything they may
do goes through this object, so the same kind runs the same way from the API, an automation, an agent or cron.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.store.tenant import TenantContext

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class SharedResources:
    """Objects the kinds of one process share, made on first use and closed when the process's runtime stops.

    The lake's query processes are the example: ``generate_query`` and flashboard tiles need a pool of them, and
    starting one per run would cost more than the query. The runtime makes one ``SharedResources`` per process and
    gives it to every ``ActionContext``; a kind asks for what it needs by key (usually its class), so the runtime
    knows nothing of what is shared.
    """

    def __init__(self) -> None:
        self._objects: dict[object, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: type[T], make: Callable[[], T]) -> T:
        """The process's ``key`` object, made by ``make()`` the first time (threads of sync kinds included)."""
        with self._lock:
            if key not in self._objects:
                self._objects[key] = make()
            found: T = self._objects[key]
            return found

    def close(self) -> None:
        """Close every object made (those with a ``close()``), newest first."""
        with self._lock:
            objects, self._objects = list(self._objects.values()), {}
        for obj in reversed(objects):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing a shared %s failed", type(obj).__name__)


ConnectionResolver = Callable[[str], Coroutine[Any, Any, ResolvedConnection]]
# Gives a worker the resolver of one run's tenant (``connections/resolver.py::StoredConnections``).
ConnectionResolverFactory = Callable[[TenantContext], ConnectionResolver]
EventEmitter = Callable[[str, Mapping[str, Any]], Coroutine[Any, Any, None]]
# Opens a database session (the runtime's sessionmaker): for kinds that write a primitive's own rows.
SessionOpener = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def no_connections(ref: str) -> ResolvedConnection:
    raise LookupError(f"connection {ref!r}: no connection resolver in this context")


async def _discard_event(kind: str, data: Mapping[str, Any]) -> None:
    return None


@dataclass
class ActionContext:
    run_id: str
    tenant: TenantContext
    attempt: int = 1
    # The run whose child this is (an automation run ``arun_…``, an agent run ``agrun_…``; ``ids.prefix_of`` says
    # which), for kinds that record who made what they make (``create_flashboard``: the agent run).
    parent_run_id: str | None = None
    cancel: CancellationToken = field(default_factory=CancellationToken)
    data_dir: Path = Path("./var")
    # Runtime knobs a kind may need (e.g. "http_allow_loopback" for tests' own servers). Never secrets.
    options: Mapping[str, Any] = field(default_factory=dict)
    # What the kinds of this process share (one lake query engine, …): see ``SharedResources``.
    shared: SharedResources = field(default_factory=SharedResources)
    _emit: EventEmitter = _discard_event
    _resolve: ConnectionResolver = no_connections
    _sessions: SessionOpener | None = None
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

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A database session, for the kinds that are a primitive's own writes (``create_flashboard``) or reads
        (the descriptions ``explain_schema`` gives). Scope every statement to ``self.tenant``: the session is not."""
        if self._sessions is None:
            raise RuntimeError("no database sessions in this context")
        return self._sessions()

    def connection_from_thread(self, ref: str) -> ResolvedConnection:
        if self._loop is None:
            raise RuntimeError("no event loop bound to this context")
        return asyncio.run_coroutine_threadsafe(self._resolve(ref), self._loop).result(timeout=60)
