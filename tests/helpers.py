"""What tests of every package share: waiting for a condition with a deadline, and reading an SSE body.

``eventually`` is the one way a test waits for something it cannot be told about directly (a row written by a
worker, a server answering): it polls ``check`` with a deadline, never sleeps a fixed time. A test that can be told
(an action kind, a wrapped method) waits on an ``asyncio.Event`` instead. ``eventually_sync`` is its twin for
sync tests only (subprocesses, threads), where no event loop runs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that; fail after ``timeout``
    seconds, naming ``what`` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """``eventually`` for sync code (a test driving a subprocess or a thread): blocks the calling thread."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def parse_sse(text: str) -> list[dict[str, str]]:
    """The events of a ``text/event-stream`` body that carry an ``id``, each as its fields (comments dropped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "id" in fields:
            events.append(fields)
    return events
