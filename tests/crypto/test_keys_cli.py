"""``vai keys status|rotate|rewrap|retire`` end to end on a real database file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from virtuousai.cli.main import app as cli
from virtuousai.config import Settings
from virtuousai.connections.models import ConnectionCreate
from virtuousai.connections.service import ConnectionService, resolve_connection
from virtuousai.crypto.providers import build_key_provider
from virtuousai.orgs.service import create_organization
from virtuousai.store.engine import make_engine, make_sessionmaker
from virtuousai.store.tenant import TenantContext


@pytest.fixture
def db_kind() -> str:
    return "sqlite"  # the rotation itself runs on both databases in test_rotation.py


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "VAI_DATABASE_URL": db_url,
        "VAI_DATA_DIR": str(tmp_path / "var"),
        "VAI_KEY_PROVIDER": "keyring",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()


async def _seed(settings: Settings, count: int) -> tuple[str, list[str]]:
    engine = make_engine(settings.resolved_database_url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            org = (await create_organization(session, "Keys", "keys@example.com")).organization.id
        ids = []
        for n in range(count):
            async with sessions() as session:
                service = ConnectionService(session, TenantContext(tenant_id=org), build_key_provider(settings))
                body = ConnectionCreate(provider="sqlite", name=f"s{n}", config={"path": "/x"}, secrets={})
                ids.append((await service.create(body)).id)
        return org, ids
    finally:
        await engine.dispose()


async def _resolve_all(settings: Settings, org: str, ids: list[str]) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            for conn_id in ids:
                await resolve_connection(session, TenantContext(tenant_id=org), conn_id, build_key_provider(settings))
    finally:
        await engine.dispose()


def _json(runner: CliRunner, *args: str) -> object:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rotation_runbook(settings: Settings) -> None:
    org, ids = asyncio.run(_seed(settings, 3))
    runner = CliRunner()
    status = _json(runner, "keys", "status")
    assert status["active_version"] == 1
    assert [(v["version"], v["records"]) for v in status["versions"]] == [(1, 3)]

    assert _json(runner, "keys", "rotate")["version"] == 2
    refused = runner.invoke(cli, ["keys", "retire", "1"])
    assert refused.exit_code == 2
    assert "3 record(s) still use key version 1" in refused.output

    rewrap = _json(runner, "keys", "rewrap")
    assert (rewrap["target_version"], rewrap["rewrapped"], rewrap["failed"]) == (2, 3, {})
    status = _json(runner, "keys", "status")
    assert [(v["version"], v["records"]) for v in status["versions"]] == [(1, 0), (2, 3)]

    retired = runner.invoke(cli, ["keys", "retire", "1"])
    assert retired.exit_code == 0, retired.output
    status = _json(runner, "keys", "status")
    assert status["versions"][0]["retired_at"] is not None
    asyncio.run(_resolve_all(settings, org, ids))
    human = runner.invoke(cli, ["keys", "status"])
    assert "retired" in human.output and "active" in human.output


def test_rotation_needs_a_versioned_provider(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAI_KEY_PROVIDER", "file")
    result = CliRunner().invoke(cli, ["keys", "rotate"])
    assert result.exit_code == 2
    assert "VAI_KEY_PROVIDER=keyring" in result.output
