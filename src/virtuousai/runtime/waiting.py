"""Waiting for a run to finish: woken by ``finished`` wake-ups, with a poll as fallback (a wake-up is a hint)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from virtuousai.store.drivers import Wakeup, WakeupHub


class Status(Protocol):
    @property
    def is_terminal(self) -> bool: ...


S = TypeVar("S", bound=Status)


async def wait_until_terminal(
    read_status: Callable[[], Awaitable[S | None]],
    *,
    hub: WakeupHub,
    run_id: str,
    timeout_s: float,
    poll_interval_s: float = 0.5,
    done: Callable[[S], bool] = lambda status: status.is_terminal,
) -> S | None:
    """Return the run's status once terminal (or ``done``), or its latest status when ``timeout_s`` runs out (None:
    gone). Any run's: an ActionRun's, an agent run's (whose ``finished`` wake-ups are published the same way).

    ``read_status`` must not hold a transaction open between calls (on SQLite that would block every writer).
    """
    changed = asyncio.Event()

    def on_wakeup(wakeup: Wakeup) -> None:
        if wakeup.topic == "finished" and wakeup.run_id == run_id:
            changed.set()

    unsubscribe = hub.subscribe(on_wakeup)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while True:
            changed.clear()
            status = await read_status()
            remaining = deadline - loop.time()
            if status is None or done(status) or remaining <= 0:
                return status
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, poll_interval_s))
    finally:
        unsubscribe()
