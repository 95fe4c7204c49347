"""Every ``vai`` process runs on the loop ``virtuousai.eventloop`` picks: uvloop on Linux and macOS unless
``VAI_EVENT_LOOP`` says otherwise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from virtuousai import eventloop


async def loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(not eventloop.UVLOOP_AVAILABLE, reason="no uvloop on this platform")
def test_auto_is_uvloop_where_it_exists() -> None:
    assert eventloop.loop_name("auto") == "uvloop"
    assert eventloop.run(loop_module(), "auto").startswith("uvloop")


def test_asyncio_can_be_asked_for() -> None:
    assert eventloop.loop_name("asyncio") == "asyncio"
    assert eventloop.run(loop_module(), "asyncio") == "asyncio.unix_events"


def test_without_a_choice_the_setting_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAI_EVENT_LOOP", "asyncio")
    assert eventloop.run(loop_module()) == "asyncio.unix_events"


def test_uvloop_where_it_does_not_exist_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop, "UVLOOP_AVAILABLE", False)
    assert eventloop.loop_name("auto") == "asyncio"
    with pytest.raises(RuntimeError, match="VAI_EVENT_LOOP=uvloop"):
        eventloop.loop_name("uvloop")


def test_run_propagates_the_coroutines_exception() -> None:
    async def fail() -> None:
        raise LookupError("from the coroutine")

    with pytest.raises(LookupError, match="from the coroutine"):
        eventloop.run(fail(), "auto")


def test_a_bad_setting_is_refused_by_the_cli() -> None:
    env = {**os.environ, "VAI_EVENT_LOOP": "trio"}
    done = subprocess.run(
        [sys.executable, "-c", "from virtuousai.cli.main import app; app()", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "event_loop" in done.stderr
