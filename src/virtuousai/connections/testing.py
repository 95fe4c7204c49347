"""Connectivity checks behind ``POST /connections/{ref}/test``: open, run ``SELECT 1`` (or one HTTP request), close.

Each probe gets the decrypted connection and raises on failure. The error that comes back names the exception type
and its message with every secret value replaced by ``***``: drivers do not usually echo passwords, but a test
result is shown to people and stored in logs, so we do not rely on it.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import quote

import httpx

from virtuousai.connections.models import ConnectionTestResult
from virtuousai.connections.providers import ScriptedConfig
from virtuousai.net import DestinationPolicy, safe_request
from virtuousai.runtime.context import ResolvedConnection

PROBE_TIMEOUT_S = 10.0

Probe = Callable[[ResolvedConnection, DestinationPolicy], Awaitable[None]]


def redact(text: str, secrets: Iterable[str]) -> str:
    # Longest first, so a secret that contains another is replaced whole.
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


async def _postgres(conn: ResolvedConnection, _: DestinationPolicy) -> None:
    import asyncpg

    config = conn.config
    connection = await asyncpg.connect(
        host=config["host"],
        port=config["port"],
        user=config["username"],
        password=conn.secrets.get("password"),
        database=config["database"],
        ssl=config.get("options", {}).get("sslmode"),
        timeout=PROBE_TIMEOUT_S,
    )
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


def _mysql_sync(conn: ResolvedConnection) -> None:
    import pymysql

    config = conn.config
    connection = pymysql.connect(
        host=config["host"],
        port=config["port"],
        user=config["username"],
        password=conn.secrets.get("password", ""),
        database=config["database"],
        connect_timeout=int(PROBE_TIMEOUT_S),
        read_timeout=int(PROBE_TIMEOUT_S),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _mysql(conn: ResolvedConnection, _: DestinationPolicy) -> None:
    await asyncio.to_thread(_mysql_sync, conn)


def _sqlite_sync(path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file at {path}")
    # Read-only, and reading the schema makes SQLite check that the file is a database at all.
    connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()


async def _sqlite(conn: ResolvedConnection, _: DestinationPolicy) -> None:
    await asyncio.to_thread(_sqlite_sync, str(conn.config["path"]))


def _duckdb_sync(path: str) -> None:
    import duckdb

    if not Path(path).is_file():
        raise FileNotFoundError(f"no file at {path}")
    connection = duckdb.connect(path, read_only=True)
    try:
        connection.execute("SELECT 1").fetchone()
    finally:
        connection.close()


async def _duckdb(conn: ResolvedConnection, _: DestinationPolicy) -> None:
    await asyncio.to_thread(_duckdb_sync, str(conn.config["path"]))


def http_auth(conn: ResolvedConnection) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query parameters) that authenticate an ``http_api`` connection."""
    config, secrets = conn.config, conn.secrets
    headers = dict(config.get("headers") or {})
    params: dict[str, str] = {}
    auth_type = config.get("auth_type", "none")
    if auth_type == "bearer":
        headers["Authorization"] = f"Bearer {secrets['token']}"
    elif auth_type == "header":
        headers[str(config["header_name"])] = secrets["token"]
    elif auth_type == "query":
        params[str(config["query_param"])] = secrets["token"]
    elif auth_type == "basic":
        pair = f"{secrets['username']}:{secrets['password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers, params


async def _http_api(conn: ResolvedConnection, policy: DestinationPolicy) -> None:
    headers, params = http_auth(conn)
    url = httpx.URL(str(conn.config["base_url"])).copy_merge_params(params)
    response = await safe_request("GET", url, headers=headers, timeout=PROBE_TIMEOUT_S, policy=policy, max_bytes=1)
    if response.status_code >= 400:
        raise ConnectionError(f"base_url answered HTTP {response.status_code}")


async def _scripted(conn: ResolvedConnection, _: DestinationPolicy) -> None:
    # Offline: nothing to reach. Its turns must still make a script (checked again: the row may predate a rule).
    ScriptedConfig.model_validate(conn.config)


PROBES: dict[str, Probe] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "sqlite": _sqlite,
    "duckdb": _duckdb,
    "http_api": _http_api,
    "scripted": _scripted,
}


async def check_connectivity(
    conn: ResolvedConnection, *, policy: DestinationPolicy | None = None
) -> ConnectionTestResult:
    probe = PROBES.get(conn.provider)
    if probe is None:
        return ConnectionTestResult(
            ok=False, latency_ms=0.0, error=f"no connectivity test for provider {conn.provider!r}"
        )
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await probe(conn, policy or DestinationPolicy())
    except TimeoutError:
        error = f"no answer within {PROBE_TIMEOUT_S:g}s"
    except Exception as exc:  # a failed test is a result, not an error of this request
        error = redact(f"{type(exc).__name__}: {exc}", conn.secrets.values())
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return ConnectionTestResult(ok=error is None, latency_ms=latency_ms, error=error)
