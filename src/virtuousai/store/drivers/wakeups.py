"""Wake-ups: small messages that tell workers and waiters "look now" instead of waiting for their next poll.

They are hints, never the source of truth: a lost wake-up costs at most one poll interval. PostgreSQL carries them
between processes with ``NOTIFY``; SQLite only within the process. Either way, subscribers in this process receive
them through the ``WakeupHub`` of their database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

# Names this process in every wake-up it publishes (no ':' — see ``encode``).
PROCESS_ID = f"p{os.getpid()}x{secrets.token_hex(3)}"

WakeupTopic = Literal["enqueued", "cancel", "finished", "access"]
TOPICS: frozenset[str] = frozenset({"enqueued", "cancel", "finished", "access"})


@dataclass(frozen=True)
class Wakeup:
    """``enqueued``: claimable runs exist. ``cancel``: a running run should stop. ``finished``: a run is terminal.
    ``access``: an API key's access changed (``tenant_id`` says whose): keys verified earlier must be checked again
    (``orgs/verified_keys.py``).

    A ``finished`` wake-up also names the run's tenant and ``parent_run_id`` (the automation or agent run it belongs
    to, if any), so the parent's orchestrator acts without a query. ``publisher`` is the process that made the
    change: every process hears it at its own commit (``local``) and others through ``LISTEN``. A parent run is
    advanced by the process that finished its child (the others' sweeps cover a process that dies first).
    """

    topic: WakeupTopic
    run_id: str = ""
    tenant_id: str = ""
    parent_run_id: str = ""
    publisher: str = PROCESS_ID

    @property
    def local(self) -> bool:
        """Published by this process (not heard from another one)."""
        return self.publisher == PROCESS_ID

    def encode(self) -> str:
        # Ids never contain ':' (prefix + ULID), so the fields need no escaping.
        return ":".join((self.topic, self.run_id, self.tenant_id, self.parent_run_id, self.publisher))

    @classmethod
    def decode(cls, payload: str) -> Wakeup | None:
        topic, run_id, tenant_id, parent_run_id, publisher = (payload.split(":", 4) + [""] * 4)[:5]
        if topic not in TOPICS:
            return None
        return cls(cast(WakeupTopic, topic), run_id, tenant_id, parent_run_id, publisher)


Subscriber = Callable[[Wakeup], None]


class WakeupHub:
    """Fans wake-ups out to subscribers, each called on its own event loop (publishers may be on any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, tuple[asyncio.AbstractEventLoop, Subscriber]] = {}
        self._next = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` on the current loop for every wake-up; returns the function that unsubscribes."""
        loop = asyncio.get_running_loop()
        with self._lock:
            key = self._next
            self._next += 1
            self._subscribers[key] = (loop, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def publish(self, wakeup: Wakeup) -> None:
        with self._lock:
            targets = list(self._subscribers.values())
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, callback in targets:
            if loop is current:
                # The usual case (the LISTEN connection and in-process publishers run on the subscribers' loop):
                # call_soon_threadsafe would also write to the loop's self-pipe, a system call per wake-up and
                # subscriber, which at thousands of runs a second is a measurable share of a worker's time.
                loop.call_soon(callback, wakeup)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(callback, wakeup)


def publish_at_commit(session: AsyncSession, hub: WakeupHub, wakeups: Sequence[Wakeup]) -> None:
    """Deliver ``wakeups`` to ``hub`` (this process's subscribers) when the session's transaction commits; nothing
    if it rolls back."""

    def on_commit(_session: Session) -> None:
        for wakeup in wakeups:
            hub.publish(wakeup)

    sa.event.listen(session.sync_session, "after_commit", on_commit, once=True)


_hubs: dict[str, WakeupHub] = {}
_hubs_lock = threading.Lock()


def hub_key(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def hub_for(url: sa.URL) -> WakeupHub:
    """The process-wide hub of one database (so an API request and an in-process worker meet)."""
    key = hub_key(url)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None:
            hub = _hubs[key] = WakeupHub()
        return hub
