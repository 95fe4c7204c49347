"""What the CLI prints: JSON help that says what comes out, whole ids in tables without a terminal, each error
message once and in the command's own words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from virtuousai.cli.main import COMMANDS, app, load

DIAMOND = str(Path(__file__).parents[2] / "examples" / "automations" / "diamond.yaml")


@pytest.fixture
def vai(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {"VAI_DATABASE_URL": db_url, "VAI_DATA_DIR": str(tmp_path / "var")}

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return invoke


def json_helps() -> dict[str, str]:
    """The help of every --json option, by command."""
    found: dict[str, str] = {}
    for name in COMMANDS:
        command = load(name)
        for sub_name, sub in getattr(command, "commands", {name: command}).items():
            for param in sub.params:
                if "--json" in getattr(param, "opts", ()):
                    found[name if sub is command else f"{name} {sub_name}"] = param.help or ""
    return found


def test_list_commands_say_they_print_an_array_and_the_others_an_object() -> None:
    helps = json_helps()
    assert "key list" in helps and "org create" in helps
    for command, text in helps.items():
        lists = command.split()[-1] in ("list", "runs") or command == "query"
        assert ("array" in text) == lists, (command, text)


def test_key_list_prints_what_its_help_says_with_whole_ids(vai) -> None:  # type: ignore[no-untyped-def]
    created = json.loads(vai("org", "create", "Wide", "--owner-email", "w@example.com", "--json").stdout)
    org = created["org_id"]
    for name in ("a much longer key name than the column has room for", "second", "third"):
        assert vai("key", "create", "--org", org, "--email", "w@example.com", "--name", name).exit_code == 0
    as_json = json.loads(vai("key", "list", "--org", org, "--json").stdout)
    assert isinstance(as_json, list) and len(as_json) == 4
    table = vai("key", "list", "--org", org)  # CliRunner's stdout is no terminal, as in a pipe
    assert table.exit_code == 0, table.output
    for key in as_json:
        assert key["id"] in table.stdout, table.stdout
    assert "…" not in table.stdout


def test_an_error_is_printed_once_in_the_commands_words(vai, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    org = json.loads(vai("org", "create", "Errs", "--owner-email", "e@example.com", "--json").stdout)["org_id"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nslug: x\nsteps:\n  - key: a\n    action: teleport\n")
    refused = vai("automation", "apply", str(bad), "--org", org)
    assert refused.exit_code == 2
    assert refused.stderr.count("unknown action kind 'teleport'") == 1, refused.stderr

    assert vai("automation", "apply", DIAMOND, "--org", org).exit_code == 0
    missing = vai("automation", "run", "diamond", "--org", org)
    assert missing.exit_code == 2
    assert missing.stderr == 'error: --param: "day" is a required property\n', missing.stderr
    malformed = vai("automation", "run", "diamond", "--org", org, "--param", "day")
    assert malformed.stderr == "error: --param: expected key=value, got 'day'\n", malformed.stderr

    revoked = vai("key", "revoke", "key_01JD0000000000000000000000", "--org", org)
    assert revoked.exit_code == 2
    assert revoked.stderr.count("\n") == 1, revoked.stderr
