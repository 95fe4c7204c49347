"""``vai worker`` subprocesses for the multi-process tests (crash recovery, zombie, drain).

Each process runs the real CLI against the test's PostgreSQL database, with its timings from ``VAI_*`` variables
and the test kinds of ``tests.runtime.kinds_effects``. Its stdout gives two signals: ``worker ready: <name> …``
once it claims, and ``worker stopped`` after a drain. Its log (stderr) goes to a file, for assertions and for
reading after a failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EFFECT_KINDS = "tests.runtime.kinds_effects"
READY_PREFIX = "worker ready: "
STOPPED_LINE = "worker stopped"


def worker_env(database_url: str, data_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a worker subprocess: ``lease_s=2`` becomes ``VAI_LEASE_S=2``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAI_")}
    env |= {
        "VAI_DATABASE_URL": database_url,
        "VAI_DATA_DIR": str(data_dir),
        "VAI_KIND_MODULES": EFFECT_KINDS,
        "VAI_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    }
    env |= {f"VAI_{key.upper()}": str(value) for key, value in settings.items()}
    return env


@dataclass
class WorkerProcess:
    """One ``vai worker`` subprocess."""

    label: str
    process: asyncio.subprocess.Process
    log_path: Path
    name: str | None = None  # the worker's name (its ``lease_owner``), known once ready
    ready_at: float | None = None  # time.time()
    killed_at: float | None = None  # time.time() of the SIGKILL
    stdout_lines: list[str] = field(default_factory=list)

    @classmethod
    async def start(cls, label: str, env: Mapping[str, str], log_dir: Path, *, concurrency: int) -> WorkerProcess:
        log_path = log_dir / f"{label}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from virtuousai.cli.main import app; app()",
                "worker",
                "--concurrency",
                str(concurrency),
                cwd=REPO_ROOT,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        return cls(label=label, process=process, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait for ``worker ready: <name> …``; returns the worker's name."""
        deadline = time.monotonic() + timeout
        while self.name is None:
            line = await self._readline(deadline - time.monotonic())
            if line.startswith(READY_PREFIX):
                self.name = line[len(READY_PREFIX) :].split(" ", 1)[0]
                self.ready_at = time.time()
        return self.name

    async def _readline(self, timeout: float) -> str:
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=max(timeout, 0.01))
        except TimeoutError:
            raise AssertionError(f"{self.label}: no output within the deadline\n{self.log_tail()}") from None
        if not raw:
            code = await self.process.wait()
            raise AssertionError(f"{self.label} exited with {code} before saying so\n{self.log_tail()}")
        line = raw.decode().rstrip("\n")
        self.stdout_lines.append(line)
        return line

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-flight, holding its leases."""
        self.killed_at = time.time()
        self.process.send_signal(signal.SIGKILL)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float = 30.0) -> tuple[int, list[str]]:
        """Wait for the process to exit; returns its exit code and the rest of its stdout."""
        assert self.process.stdout is not None
        try:
            rest = await asyncio.wait_for(self.process.stdout.read(), timeout=timeout)
            code = await asyncio.wait_for(self.process.wait(), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{self.label} did not exit within {timeout}s\n{self.log_tail()}") from None
        self.stdout_lines.extend(rest.decode().splitlines())
        return code, self.stdout_lines

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def ensure_dead(self) -> None:
        """Cleanup: a process this test started must not outlive it."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)  # also ends a paused (SIGSTOP) process
            await self.process.wait()
