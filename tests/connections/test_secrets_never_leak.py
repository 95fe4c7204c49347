"""A canary secret goes in once and never comes out: not in a response, a log line, an event, an error message,
nor in plaintext in the SQLite file or a pg_dump of the PostgreSQL database."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.connections.conftest import CANARY, postgres_body
from tests.connections.http_server import bearer_server

API = "/api/v1/connections"


def _stored_bytes(db_kind: str, db_url: str) -> bytes:
    url = sa.engine.make_url(db_url)
    if db_kind == "sqlite":
        base = Path(str(url.database))
        return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal")) if p.exists())
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", str(url.database)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return dump.stdout


async def test_the_canary_never_leaves(
    app: FastAPI,
    client: httpx.AsyncClient,
    org: OrgHandle,
    db_kind: str,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses: list[httpx.Response] = []

    async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, path, headers=org.headers, **kwargs)  # type: ignore[arg-type]
        responses.append(response)
        return response

    wrong_db = postgres_body(config={"host": "127.0.0.1", "database": "no_such_db", "username": "postgres"})
    created = (await call("POST", API, json=wrong_db)).json()
    with bearer_server("expected-token") as base_url:
        http_api = {"provider": "http_api", "name": "api", "slug": "api", "config": {"base_url": base_url}}
        api = await call("POST", API, json=http_api | {"secrets": {"token": CANARY}})
        await call("POST", f"{API}/slug:api/test")  # 401 from the server: a failed test
    await call("GET", f"{API}/{created['id']}")
    await call("GET", f"{API}/provider:postgres")
    await call("GET", API)
    await call("POST", f"{API}/{created['id']}/test")  # database does not exist: a failed test
    await call("PATCH", f"{API}/{created['id']}", json={"secrets": {"password": CANARY + "-2"}, "name": "renamed"})
    # Rejected input that carries the canary: in an unknown secret field, a too-long value, a wrong type.
    await call("POST", API, json=postgres_body(slug="x", is_default=False, secrets={"password": CANARY, "pin": CANARY}))
    await call("POST", API, json=postgres_body(slug="y", is_default=False, secrets={"password": CANARY * 1000}))
    await call("POST", API, json=postgres_body(slug="z", is_default=False, secrets={"password": [CANARY]}))
    await call("PATCH", f"{API}/{api.json()['id']}", json={"secrets": {"username": CANARY}, "config": {
        "base_url": "http://127.0.0.1:9/", "auth_type": "basic"}})  # fmt: skip

    statuses = [r.status_code for r in responses]
    assert statuses == [201, 201, 200, 200, 200, 200, 200, 200, 422, 422, 422, 422], statuses
    assert [r.json()["ok"] for r in responses if r.request.url.path.endswith("/test")] == [False, False]
    for response in responses:
        assert CANARY not in response.text, (response.request.url, response.text)
        assert CANARY not in str(response.headers)
    assert caplog.records, "nothing was logged, so this check proves nothing"
    assert CANARY not in caplog.text
    assert all(CANARY not in str(record.args) for record in caplog.records)

    stored = _stored_bytes(db_kind, db_url)
    assert created["id"].encode() in stored, "the connection row is not where we looked"
    assert CANARY.encode() not in stored
