"""A command run against a database that was never migrated says so in one sentence (and how to fix it), exit 2,
instead of a traceback of "no such table"."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import _pg_admin, _pg_dsn
from virtuousai.cli.main import app

COMMANDS = [["org", "list"], ["key", "list", "--org", "org_x"], ["automation", "runs", "--org", "org_x"]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/empty.db"
        return
    name = f"vai_empty_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield _pg_dsn(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unmigrated_database_is_one_sentence_and_exit_2(
    command: list[str], empty_database: str, tmp_path: Path
) -> None:
    env = {"VAI_DATABASE_URL": empty_database, "VAI_DATA_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: the database has no VirtuousAI tables yet: run `vai migrate`")
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1
