"""The event loop a ``vai`` process runs on: uvloop where it exists (Linux and macOS, a dependency there), asyncio's
own loop elsewhere or when ``VAI_EVENT_LOOP=asyncio`` asks for it.

uvloop runs the same asyncio code on libuv, with the loop's own work (callbacks, timers, socket reads and writes)
done in C. That work is a large share of a short run's cost: a no-op automation step is a handful of round trips to
the database and a few tasks, and on the chain of ``bench/automations.py`` the worker processes' CPU per step fell
by about a quarter on uvloop (docs/automations.md, "Measured"). asyncpg, our PostgreSQL driver, is written for it.

``vai worker`` and every CLI command run their coroutine with ``run``; ``vai serve`` gives uvicorn ``loop_name``
(uvicorn then also parses HTTP with httptools, installed with us).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from virtuousai.config import LoopChoice, Settings

T = TypeVar("T")
LoopName = Literal["uvloop", "asyncio"]

UVLOOP_AVAILABLE = sys.platform != "win32"  # uvloop is a dependency everywhere but Windows


def loop_name(choice: LoopChoice = "auto") -> LoopName:
    """The loop ``choice`` means here; ``uvloop`` where it does not exist is a configuration error."""
    if choice == "asyncio" or (choice == "auto" and not UVLOOP_AVAILABLE):
        return "asyncio"
    if not UVLOOP_AVAILABLE:
        raise RuntimeError("VAI_EVENT_LOOP=uvloop: uvloop does not exist on this platform; use auto or asyncio")
    return "uvloop"


def loop_factory(choice: LoopChoice = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    if loop_name(choice) == "asyncio":
        return asyncio.new_event_loop
    import uvloop  # only where it is installed

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: LoopChoice | None = None) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names (default: ``VAI_EVENT_LOOP``, itself ``auto``)."""
    if choice is None:
        choice = Settings().event_loop
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
