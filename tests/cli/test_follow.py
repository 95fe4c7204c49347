"""``--follow`` with no worker running says so (once, on stderr, with how to start one) and keeps following: a
worker started afterwards finishes the run and the command exits 0. Real processes on a real database."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.helpers import eventually_sync
from tests.servers import VAI, vai_env

DIAMOND = str(Path(__file__).parents[2] / "examples" / "automations" / "diamond.yaml")


def vai(env: dict[str, str], *args: str) -> str:
    return subprocess.run([VAI, *args], env=env, capture_output=True, text=True, timeout=120, check=True).stdout


def test_follow_without_a_worker_says_so_then_sees_one_start(db_url: str, tmp_path: Path) -> None:
    env = vai_env(tmp_path / "var", VAI_DATABASE_URL=db_url, VAI_FOLLOW_NOTICE_S="0.5", VAI_POLL_INTERVAL_S="0.1")
    org = json.loads(vai(env, "org", "create", "Follow", "--owner-email", "f@example.com", "--json"))["org_id"]
    vai(env, "automation", "apply", DIAMOND, "--org", org)

    out, err = tmp_path / "follow.out", tmp_path / "follow.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        follow = subprocess.Popen(
            [VAI, "automation", "run", "diamond", "--org", org, "-p", "day=2030-01-31", "--follow", "--timeout", "90"],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    worker = None
    try:
        eventually_sync(
            lambda: "no worker has claimed" in err.read_text() or follow.poll() is not None,
            timeout=60,
            what="the notice",
        )
        assert follow.poll() is None, err.read_text()  # still following
        notice = err.read_text()
        assert notice.count("no worker has claimed arun_") == 1, notice
        assert "vai worker" in notice and "Still following" in notice

        worker_log = tmp_path / "worker.out"
        with worker_log.open("wb") as worker_out:
            worker = subprocess.Popen([VAI, "worker"], env=env, stdout=worker_out, stderr=subprocess.STDOUT)
        assert follow.wait(timeout=90) == 0, (out.read_text(), err.read_text(), worker_log.read_text())
        assert "COMPLETED" in out.read_text()
        assert err.read_text().count("no worker has claimed") == 1  # said once, not on every look
    finally:
        for process in (follow, worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
