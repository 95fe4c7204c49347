"""One text form for every timestamp we write: ISO 8601 in UTC with ``T`` and ``Z`` (docs/api.md), from one function
(``timeutil.isoformat``) on every surface: REST bodies, SSE payloads, the CLI's ``--json`` and JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from typer.testing import CliRunner

from tests.conftest import OrgHandle
from tests.helpers import parse_sse
from virtuousai.app import create_app
from virtuousai.cli.main import app as cli
from virtuousai.config import Settings
from virtuousai.logging import JsonFormatter
from virtuousai.timeutil import isoformat

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")

aware = st.datetimes(
    min_value=datetime(1, 1, 2),  # a day inside the range, so every offset keeps the UTC value representable
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))),
)


@given(value=aware)
def test_isoformat_is_utc_with_t_and_z_and_reads_back_equal(value: datetime) -> None:
    text = isoformat(value)
    assert ISO_UTC.match(text), text
    assert datetime.fromisoformat(text) == value
    # The same text Pydantic writes for the UTC value: what REST clients always got.
    assert text == TypeAdapter(datetime).dump_python(value.astimezone(UTC), mode="json")


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        isoformat(datetime(2030, 1, 1))


def test_json_log_lines_use_it() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.request_id = "-"
    record.when = datetime(2030, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    line = json.loads(JsonFormatter().format(record))
    assert ISO_UTC.match(line["ts"]), line
    assert line["when"] == "2030-01-01T00:00:00Z"


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"poll_interval_s": 0.05}), workers=1)
    async with app.router.lifespan_context(app):
        yield app


async def test_rest_and_sse_write_the_same_form(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = (
        await client.post("/api/v1/action-runs?wait=10", headers=org.headers, json={"kind": "echo", "inputs": {}})
    ).json()
    assert run["status"] == "COMPLETED", run
    for field in ("created_at", "started_at", "finished_at"):
        assert ISO_UTC.match(run[field]), (field, run[field])
    events = parse_sse((await client.get(f"/api/v1/action-runs/{run['id']}/events", headers=org.headers)).text)
    stamps = [json.loads(event["data"])["at"] for event in events]
    assert stamps and all(ISO_UTC.match(at) for at in stamps), stamps

    spec = {"name": "t", "slug": "t", "steps": [{"key": "a", "action": "echo", "inputs": {}}]}
    assert (await client.post("/api/v1/automations", headers=org.headers, json=spec)).status_code == 201
    started = (await client.post("/api/v1/automations/slug:t/runs", headers=org.headers, json={})).json()
    async with asyncio.timeout(20):
        body = (await client.get(f"/api/v1/automation-runs/{started['id']}/events", headers=org.headers)).text
    stamps = [json.loads(event["data"])["at"] for event in parse_sse(body)]
    assert stamps and all(ISO_UTC.match(at) for at in stamps), stamps


def test_the_cli_json_writes_the_same_form(db_url: str, tmp_path: Path) -> None:
    env = {"VAI_DATABASE_URL": db_url, "VAI_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    created = runner.invoke(cli, ["org", "create", "Clock", "--owner-email", "c@example.com", "--json"], env=env)
    assert created.exit_code == 0, created.output
    orgs = runner.invoke(cli, ["org", "list", "--json"], env=env)
    assert orgs.exit_code == 0, orgs.output
    assert [ISO_UTC.match(o["created_at"]) is not None for o in json.loads(orgs.output)] == [True]
    keys = runner.invoke(cli, ["key", "list", "--org", json.loads(created.output)["org_id"], "--json"], env=env)
    assert keys.exit_code == 0, keys.output
    assert [ISO_UTC.match(k["created_at"]) is not None for k in json.loads(keys.output)] == [True]
