"""``vai serve`` as a real process on a free loopback port, driven over real HTTP and with the real CLI.

SQLite under a temporary VAI_DATA_DIR; the `vai` of this interpreter's venv. Polls with a deadline, never sleeps.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.servers import START_TIMEOUT_S, VAI, Server, free_port, vai_env

KEY_PATTERN = re.compile(r"\bvai_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\b")


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
