"""A command run against a database that was never migrated says so in one sentence (and how to fix it), exit 2,
instead of a traceback of "no such table"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from virtuousai.cli.main import app

COMMANDS = [["org", "list"], ["key", "list", "--org", "org_x"], ["automation", "runs", "--org", "org_x"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unmigrated_database_is_one_sentence_and_exit_2(
    command: list[str], empty_db_url: str, tmp_path: Path
) -> None:
    env = {"VAI_DATABASE_URL": empty_db_url, "VAI_DATA_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: the database has no VirtuousAI tables yet: run `vai migrate`")
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1
