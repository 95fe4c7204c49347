"""``vai run``, ``vai runs``, ``vai query`` and ``vai connections`` against a real ``vai serve`` process over HTTP
(``VAI_URL``, ``VAI_API_KEY``): what they print, their exit statuses, and the server's problems printed once in the
commands' own words."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.helpers import eventually_sync
from tests.servers import VAI, Server, free_port, vai_env
from virtuousai.cli.main import app


def owner_key(env: dict[str, str]) -> str:
    created = subprocess.run(
        [VAI, "org", "create", "Remote", "--owner-email", "r@example.com", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key: str = json.loads(created.stdout)["api_key"]
    return key


def client(env: dict[str, str]) -> Callable[..., Result]:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=env, input=input)

    return invoke


@pytest.fixture
def served(tmp_path: Path, start_server: Callable[..., Server]) -> tuple[Server, dict[str, str]]:
    env = vai_env(tmp_path / "var", VAI_POLL_INTERVAL_S="0.1")
    server = start_server(env)  # SQLite: one in-process worker
    return server, {**env, "VAI_URL": server.url, "VAI_API_KEY": owner_key(env)}


def test_runs_from_start_to_decision(served: tuple[Server, dict[str, str]]) -> None:
    server, env = served
    vai = client(env)

    followed = vai("run", "echo", "--input", "hello=world", "--input", "n=3", "--follow")
    assert followed.exit_code == 0, followed.output
    assert " COMPLETED" in followed.stdout
    assert '"hello": "world"' in followed.stdout and '"n": 3' in followed.stdout

    started = vai("run", "echo", "--input", "x=1", "--json")
    run = json.loads(started.stdout)
    assert run["id"].startswith("run_") and run["inputs"] == {"x": 1}

    listed = json.loads(vai("runs", "list", "--json").stdout)
    assert run["id"] in [r["id"] for r in listed] and len(listed) == 2
    table = vai("runs", "list")
    assert all(r["id"] in table.stdout for r in listed), table.stdout
    shown = vai("runs", "show", run["id"])
    assert shown.exit_code == 0 and run["inputs_hash"] in shown.stdout

    unknown = vai("run", "teleport")
    assert unknown.exit_code == 2
    assert unknown.stderr.count("\n") == 1 and "teleport" in unknown.stderr, unknown.stderr
    wrong_input = vai("run", "sleep", "--input", "seconds=forever")
    assert wrong_input.exit_code == 2
    assert "\nerror: --input seconds: " in wrong_input.stderr and "body" not in wrong_input.stderr, wrong_input.stderr
    missing = vai("runs", "show", "run_01JD0000000000000000000000")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: "), missing.stderr

    # Approvals: an admin decides on the exact inputs shown.
    headers = {"Authorization": f"Bearer {env['VAI_API_KEY']}"}
    policy = httpx.put(
        f"{server.url}/api/v1/action-policy/echo", headers=headers, json={"requires_approval": True}, trust_env=False
    )
    assert policy.status_code == 200, policy.text
    waiting = json.loads(vai("run", "echo", "--input", "pay=10", "--json").stdout)
    assert waiting["status"] == "AWAITING_APPROVAL"
    stale = vai("runs", "approve", waiting["id"], "--inputs-hash", "0" * 64)
    assert stale.exit_code == 2 and stale.stderr.count("error:") == 1, stale.stderr
    declined = vai("runs", "approve", waiting["id"], input="n\n")
    assert declined.exit_code == 1 and '"pay": 10' in declined.stderr
    approved = vai("runs", "approve", waiting["id"], "--yes")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.split() in (
        [waiting["id"], "PENDING"],
        [waiting["id"], "RUNNING"],
        [waiting["id"], "COMPLETED"],
    )

    refused = json.loads(vai("run", "echo", "--input", "pay=99", "--json").stdout)
    rejected = vai("runs", "reject", refused["id"], "--reason", "too much", "--yes", "--json")
    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout)["status"] == "CANCELLED"

    long = json.loads(vai("run", "sleep", "--input", "seconds=600", "--json").stdout)
    cancelled = vai("runs", "cancel", long["id"])
    assert cancelled.exit_code == 0 and cancelled.stdout.startswith(long["id"]), cancelled.output


def test_query_and_connections(served: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    _, env = served
    vai = client(env)
    assert json.loads(vai("query", "SELECT 1 AS one, 'a' AS two", "--json").stdout) == [{"one": 1, "two": "a"}]
    assert vai("query", "SELECT 1 AS one, 'a' AS two", "--csv").stdout == "one,two\n1,a\n"
    table = vai("query", "SELECT 1 AS one")
    assert table.exit_code == 0 and "one" in table.stdout
    refused = vai("query", "DELETE FROM silver.shop.orders")
    assert refused.exit_code == 2 and refused.stderr.startswith("error: "), refused.stderr

    shop = tmp_path / "shop.db"
    sqlite3.connect(shop).close()
    created = vai("connections", "create", "sqlite", "Shop", "--slug", "shop", "--config", f"path={shop}")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("created conn_") and "(slug:shop)" in created.stdout
    listed = json.loads(vai("connections", "list", "--json").stdout)
    assert [(c["slug"], c["provider"]) for c in listed] == [("shop", "sqlite")]
    assert vai("connections", "test", "shop").stdout.startswith("ok (")
    bad_secret = vai("connections", "create", "sqlite", "Other", "--config", f"path={shop}", "--secret", "tokn=x")
    assert bad_secret.exit_code == 2
    assert "error: --secret tokn: " in bad_secret.stderr and "body" not in bad_secret.stderr, bad_secret.stderr
    vai("connections", "create", "sqlite", "Gone", "--slug", "gone", "--config", "path=/nonexistent/x.db")
    failing = vai("connections", "test", "slug:gone")
    assert failing.exit_code == 1 and failing.stderr.startswith("failed: "), failing.output


def test_without_a_key_or_a_server_it_says_which(tmp_path: Path) -> None:
    env = vai_env(tmp_path / "var")
    no_key = client(env)("runs", "list")
    assert no_key.exit_code == 2 and "VAI_API_KEY is not set" in no_key.stderr
    nowhere = client({**env, "VAI_URL": f"http://127.0.0.1:{free_port()}", "VAI_API_KEY": "vai_x"})("runs", "list")
    assert nowhere.exit_code == 1 and "cannot reach http://127.0.0.1:" in nowhere.stderr, nowhere.stderr


def test_follow_without_a_worker_says_so(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    env = vai_env(tmp_path / "var", VAI_POLL_INTERVAL_S="0.1")
    server = start_server(env, "--workers", "0")
    env = {**env, "VAI_URL": server.url, "VAI_API_KEY": owner_key(env), "VAI_FOLLOW_NOTICE_S": "0.5"}
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        follow = subprocess.Popen([VAI, "run", "echo", "-i", "a=1", "--follow"], env=env, stdout=stdout, stderr=stderr)
    worker = None
    try:
        eventually_sync(
            lambda: "no worker has claimed" in err.read_text() or follow.poll() is not None,
            timeout=60,
            what="the notice",
        )
        assert follow.poll() is None, err.read_text()
        assert "the server's database" in err.read_text()
        worker = subprocess.Popen([VAI, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert follow.wait(timeout=60) == 0, (out.read_text(), err.read_text())
        assert " COMPLETED" in out.read_text() and err.read_text().count("no worker has claimed") == 1
    finally:
        for process in (follow, worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
