"""Every curl in README.md and docs/*.md runs as written against a live ``vai serve --demo``.

How the docs' placeholders are filled (docs/api.md, "How this is tested", says the same):

- Each page's ``bash``/``sh`` blocks that call curl run in order in one shell, with the blocks that only set
  variables (``BASE=…``, ``KEY=…``, ``H=(…)``), so a page's variables carry from block to block as in a reader's shell.
- The shell starts in a folder laid out like the repository root: ``var/`` is the server's data directory (so
  ``$(cat var/demo-api-key)`` is the demo owner's key, as after ``make run``), ``examples/`` and ``.venv/`` are the
  repository's. ``VAI_API_KEY`` is that key too.
- ``http://127.0.0.1:8000`` is replaced by the test server's address (a free port); nothing else is rewritten.
- A block that needs what cannot exist here (an external host) is marked by the line
  ``<!-- docs-test: skip: <why> -->`` just above it; ``SKIPPED`` below lists every such block, with its reason, so
  the list stays short and in view.

A curl passes when it reached the server (exit status 0) and got neither a 5xx nor a 415 (a body not declared as
JSON: the mistake these pages used to make); the shell must write nothing to stderr (no jq error on an unexpected
answer, no missing command). Answers the docs show as errors (401, 404, 409, 422) are expected and pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import Server, vai_env

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_BASE = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```(bash|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKIP_MARK = re.compile(r"<!-- docs-test: skip: (.+?) -->\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Every block the test does not run, as "page:line": why. Keep it short; each entry is a promise nobody checks.
SKIPPED: dict[str, str] = {}

CURL_WRAPPER = """#!/bin/bash
# The docs test's curl: the real one, plus one record per call in $CURL_LOG (status, method, URL, exit status).
for arg in "$@"; do
  case "$arg" in -w|--write-out|-w?*) exec "$REAL_CURL" "$@";; esac  # the docs' own -w wins; not recorded
done
"$REAL_CURL" "$@" -w '%{stderr}@@status %{http_code} %{method} %{url_effective}\\n' 2>>"$CURL_LOG"
code=$?
echo "@@exit $code" >>"$CURL_LOG"
exit $code
"""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> Iterator[Block]:
    """The blocks of ``page`` the test runs: those with a curl, and those that only set variables."""
    text = page.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        code = match.group(2)
        lines = [line.strip() for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
        if "curl " not in code and not (lines and all(ASSIGNMENT.match(line) for line in lines)):
            continue
        line = text.count("\n", 0, match.start()) + 1
        block = Block(page, line, code)
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if SKIP_MARK.search(before):
            assert block.where in SKIPPED, f"{block.where} is marked to skip but not listed in SKIPPED"
            continue
        yield block


def test_the_skipped_blocks_are_the_listed_ones() -> None:
    marked = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if SKIP_MARK.search(before):
                marked.append(f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}")
    assert sorted(marked) == sorted(SKIPPED)


@pytest.fixture
def demo(tmp_path: Path, start_server: Callable[..., Server]) -> tuple[Server, Path]:
    """A demo server and a folder laid out like the repository root around its data directory."""
    workdir = tmp_path / "repo"
    workdir.mkdir()
    for name in ("examples", ".venv"):
        (workdir / name).symlink_to(ROOT / name)
    server = start_server(vai_env(workdir / "var"), "--demo")
    return server, workdir


def test_every_curl_in_the_docs_runs_as_written(demo: tuple[Server, Path], tmp_path: Path) -> None:
    for tool in ("jq", "yq", "sqlite3"):
        assert shutil.which(tool), f"the docs use {tool}; install it (apt-get install {tool})"
    server, workdir = demo
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    (wrapper_dir / "curl").write_text(CURL_WRAPPER)
    (wrapper_dir / "curl").chmod(0o755)
    real_curl = shutil.which("curl")
    assert real_curl, "curl is needed"
    key = (workdir / "var" / "demo-api-key").read_text().strip()

    failures: list[str] = []
    ran = 0
    for page in PAGES:
        page_blocks = list(blocks(page))
        if not page_blocks:
            continue
        log = tmp_path / f"{page.stem}.curl.log"
        script = "\n".join(f"# {b.where}\n{b.code}" for b in page_blocks) + "\nwait\n"
        env = {
            **vai_env(workdir / "var"),
            "PATH": f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}",
            "REAL_CURL": real_curl,
            "CURL_LOG": str(log),
            "VAI_API_KEY": key,
        }
        result = subprocess.run(
            ["bash", "-c", script.replace(DOCUMENTED_BASE, server.url)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        name = str(page.relative_to(ROOT))
        if result.stderr.strip():
            failures.append(f"{name}: the shell wrote to stderr:\n{result.stderr}")
        calls = parse_log(log.read_text() if log.exists() else "")
        ran += len(calls)
        expected = sum(block.code.count("curl ") for block in page_blocks)
        if len(calls) < expected - count_unrecorded(page_blocks):
            failures.append(f"{name}: {len(calls)} curl calls recorded, the page has {expected}")
        for call in calls:
            if call.exit_code != 0 or call.status == 0 or call.status >= 500 or call.status == 415:
                failures.append(f"{name}: {call}")
    assert ran > 50, f"only {ran} curl calls ran"
    assert not failures, "\n".join(failures) + f"\n(server log:\n{server.logs()[-3000:]})"


@dataclass(frozen=True)
class Call:
    status: int
    method: str
    url: str
    exit_code: int
    stderr: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} → {self.status}, curl exit {self.exit_code} {self.stderr}".rstrip()


def parse_log(text: str) -> list[Call]:
    calls: list[Call] = []
    status, method, url, errors = 0, "", "", []
    for line in text.splitlines():
        if line.startswith("@@status "):
            _, code, method, url = line.split(" ", 3)
            status = int(code)
        elif line.startswith("@@exit "):
            calls.append(Call(status, method, url, int(line.split()[1]), " ".join(errors)))
            status, method, url, errors = 0, "", "", []
        else:
            errors.append(line)
    return calls


def count_unrecorded(page_blocks: list[Block]) -> int:
    """Calls that pass their own ``-w`` are run but not recorded (the wrapper leaves their output alone)."""
    return sum(len(re.findall(r"curl [^\n]*-w ", block.code)) for block in page_blocks)
