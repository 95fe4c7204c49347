"""Wake-ups: small messages that tell workers and waiters "look now" instead of waiting for their next poll.

They are hints, never the source of truth: a lost wake-up costs at most one poll interval. PostgreSQL carries them
between processes with ``NOTIFY``; SQLite only within the process. Either way, subscribers in this process receive
them through the ``WakeupHub`` of their database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

WakeupTopic = Literal["enqueued", "cancel", "finished"]


@dataclass(frozen=True)
class Wakeup:
    """``enqueued``: claimable runs exist. ``cancel``: a running run should stop. ``finished``: a run is terminal."""

    topic: WakeupTopic
    run_id: str = ""

    def encode(self) -> str:
        return f"{self.topic}:{self.run_id}"

    @classmethod
    def decode(cls, payload: str) -> Wakeup | None:
        topic, _, run_id = payload.partition(":")
        if topic == "enqueued":
            return cls("enqueued", run_id)
        if topic == "cancel":
            return cls("cancel", run_id)
        if topic == "finished":
            return cls("finished", run_id)
        return None


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
        for loop, callback in targets:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback, wakeup)


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
