"""One log format per process (``VAI_LOG_FORMAT``) for every line, ours and third-party: dlt (which installs its own
pipe-delimited handler on every run), uvicorn, any library's logger and ``warnings.warn``. In a fresh interpreter,
so the test's own logging is untouched."""

from __future__ import annotations

import json
import re
import subprocess
import sys

EMIT = """
from virtuousai.logging import configure_logging
configure_logging("INFO", {fmt!r})
import logging, warnings
from dlt.common import logger
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.runtime.init import initialize_runtime
initialize_runtime("dlt", RuntimeConfiguration(dlthub_telemetry=False))  # what every dlt pipeline run does
logger.warning("a dlt warning")
logging.getLogger("uvicorn.error").warning("a uvicorn warning")
logging.getLogger("httpx").warning("a library warning")
logging.getLogger("virtuousai.x").info("ours")
warnings.warn("a warnings.warn")
"""
PLAIN = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) +\[-\] [\w.]+: ")


def emitted(fmt: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", EMIT.format(fmt=fmt)], capture_output=True, text=True, timeout=120, check=True
    )
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_json_lines_for_every_logger() -> None:
    records = [json.loads(line) for line in emitted("json") if not line.startswith(" ")]
    assert {r["logger"] for r in records} >= {"dlt", "uvicorn.error", "httpx", "virtuousai.x", "py.warnings"}
    assert all("request_id" in r and r["ts"].endswith("Z") for r in records)


def test_plain_lines_for_every_logger() -> None:
    lines = emitted("plain")
    starts = [line for line in lines if PLAIN.match(line)]
    assert {line.split("] ", 1)[1].split(":", 1)[0] for line in starts} >= {"dlt", "uvicorn.error", "httpx"}
    others = [line for line in lines if not PLAIN.match(line)]
    assert all(line.startswith("  ") for line in others), others  # only the source line warnings.warn appends
    assert not any("|[WARNING]|" in line for line in lines)
