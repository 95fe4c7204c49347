"""``vai serve`` and the ``vai`` CLI as real processes: the executable of this interpreter's venv, a free loopback
port, an environment without the developer's VAI_ settings, and a started server (the ``start_server`` fixture of
``tests/conftest.py`` starts them and kills whatever a test leaves running)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers import eventually_sync

VAI = str(Path(sys.executable).parent / "vai")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vai_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment without any VAI_ setting of the developer's, pointed at a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAI_")}
    env.update(VAI_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout.read_text()

    def logs(self) -> str:
        return self.stderr.read_text()

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False

    def stop_cleanly(self) -> None:
        """SIGTERM, as a process manager would, then a graceful exit: the lifespan's shutdown ran to the end.

        uvicorn re-raises the signal once it has shut down (so the parent sees why it stopped), hence exit status
        -SIGTERM as well as 0 counts as clean; a crash or a hang does not."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_TIMEOUT_S)
        assert code in (0, -signal.SIGTERM), f"exit status {code}:\n{self.logs()}"
        assert "Application shutdown complete" in self.logs(), self.logs()


def start_serve(env: dict[str, str], *args: str, logs_dir: Path) -> Server:
    """``vai serve`` on a free port, once it answers ``/healthz`` (its output in ``logs_dir``)."""
    port = free_port()
    out, err = logs_dir / f"serve-{port}.out", logs_dir / f"serve-{port}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [VAI, "serve", "--host", "127.0.0.1", "--port", str(port), *args], env=env, stdout=stdout, stderr=stderr
        )
    server = Server(process, port, out, err)
    try:
        eventually_sync(
            lambda: server.answers() or process.poll() is not None,
            timeout=START_TIMEOUT_S,
            interval=0.05,
            what="vai serve to answer",
        )
    except AssertionError:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
        raise
    assert process.poll() is None, f"vai serve exited {process.returncode}:\n{server.output()}\n{server.logs()}"
    return server
