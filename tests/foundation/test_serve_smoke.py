"""``vai serve`` as a real process on a free loopback port, driven over real HTTP and with the real CLI.

SQLite under a temporary VAI_DATA_DIR; the `vai` of this interpreter's venv. Polls with a deadline, never sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

VAI = str(Path(sys.executable).parent / "vai")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
KEY_PATTERN = re.compile(r"\bvai_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\b")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # poll interval, not synchronisation


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


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(env: dict[str, str], *args: str) -> Server:
        port = free_port()
        out, err = tmp_path / f"serve-{port}.out", tmp_path / f"serve-{port}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [VAI, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        server = Server(process, port, out, err)
        started.append(server)
        wait_until(lambda: server.answers() or process.poll() is not None, START_TIMEOUT_S, "vai serve to answer")
        assert process.poll() is None, f"vai serve exited {process.returncode}:\n{server.output()}\n{server.logs()}"
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=STOP_TIMEOUT_S)


def test_serve_answers_a_key_made_by_the_cli(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    env = vai_env(tmp_path / "var", VAI_LOG_FORMAT="json")
    server = start_server(env)
    assert f"{server.url}/docs" in server.output()

    created = subprocess.run(
        [VAI, "org", "create", "Smoke Co", "--owner-email", "smoke@example.com", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    org = json.loads(created.stdout)
    assert org["org_id"].startswith("org_")

    with httpx.Client(base_url=server.url, timeout=10.0, trust_env=False) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {org['api_key']}"})
        assert me.status_code == 200, me.text
        assert me.json()["organization"]["id"] == org["org_id"]
        assert me.json()["role"] == "owner"
        anonymous = http.get("/api/v1/me", headers={"X-Request-ID": "smoke-trace-1"})
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        assert anonymous.headers["x-request-id"] == "smoke-trace-1"
        assert http.get("/openapi.json").json()["info"]["title"] == "VirtuousAI"
        assert http.get("/docs").status_code == 200

    server.stop_cleanly()
    log_lines = [line for line in server.logs().splitlines() if line.strip()]
    assert log_lines, "the server logged nothing"
    for line in log_lines:
        record = json.loads(line)  # VAI_LOG_FORMAT=json: every line is one JSON object ...
        assert "request_id" in record  # ... and carries the request id ("-" outside a request)


def test_serve_demo_prints_a_working_key(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    data_dir = tmp_path / "var"
    server = start_server(vai_env(data_dir), "--demo")

    printed = KEY_PATTERN.findall(server.output())
    assert len(printed) == 1, server.output()
    demo_key = printed[0]
    key_file = data_dir / "demo-api-key"
    assert key_file.read_text().strip() == demo_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "master.key").stat().st_mode) == 0o600

    me = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {demo_key}"}, trust_env=False)
    assert me.status_code == 200, me.text
    assert me.json()["organization"]["name"] == "Demo organization"
    server.stop_cleanly()


def test_serve_refuses_a_master_key_others_can_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    key_file = data_dir / "master.key"
    key_file.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")  # 32 bytes, base64
    key_file.chmod(0o644)

    try:
        result = subprocess.run(
            [VAI, "serve", "--host", "127.0.0.1", "--port", str(free_port())],
            env=vai_env(data_dir),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("vai serve started with a world-readable master key") from exc
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert str(key_file) in result.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644, "the server must not silently fix the mode"
