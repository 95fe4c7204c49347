"""schemathesis over /openapi.json, as an independent fuzzer runs it: its CLI with every check and every phase
(examples, coverage, fuzzing, stateful) against a live ``vai serve --demo``, as the demo organization's owner.

No answer may be a 5xx; every answer must be documented (status, content type, headers, body schema); a request
the document forbids must be refused and, where acceptance depends only on the document (operations without a
body), one it allows must be accepted; a 405 must carry ``Allow``; and the stateful phase follows the links it
infers between operations. ``schemathesis.toml`` beside this file says what is configured and why. Routes added later
are exercised too. Repeatable: a fixed seed and a bounded number of examples per operation.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.servers import Server, vai_env

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "18"
MAX_EXAMPLES = "20"


def test_every_answer_is_documented_and_none_is_a_server_error(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    data_dir = tmp_path / "var"
    server = start_server(vai_env(data_dir), "--demo")
    key = (data_dir / "demo-api-key").read_text().strip()
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {key}",
            "--seed",
            SEED,
            "--max-examples",
            MAX_EXAMPLES,
            "--workers",
            "1",  # hypothesis's lambda descriptions are not thread-safe on Python 3.11 (a SystemError under 2)
        ],
        cwd=tmp_path,  # schemathesis keeps a cache of crashes in its working directory
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout + result.stderr
    assert "selected /" in report, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"{phase} (in" in report, f"the {phase} phase did not run:\n{report}"
    assert result.returncode == 0, report
