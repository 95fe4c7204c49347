"""Every command that takes ``--org`` resolves it the one way (``cli/common.resolve_org``): an unknown organization
is ``error: no organization org_…`` on stderr, once, exit status 2, and nothing is done.

The commands are discovered from the command table, so a new ``--org`` command must be listed in ``ARGUMENTS``
(what else it needs to get as far as the organization) or this test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from virtuousai.cli.main import COMMANDS, app, load

ROOT = Path(__file__).parents[2]
DIAMOND = str(ROOT / "examples" / "automations" / "diamond.yaml")
ANALYST = str(ROOT / "examples" / "agents" / "data-analyst.md")

# Each --org command, with the other arguments it needs before the organization matters.
ARGUMENTS: dict[str, list[str]] = {
    "key create": ["--email", "owner@example.com"],
    "key list": [],
    "key revoke": ["key_01JD0000000000000000000000"],
    "automation apply": [DIAMOND],
    "automation run": ["diamond", "--param", "day=2030-01-01"],
    "automation runs": [],
    "agent validate": [ANALYST],
    "agent apply": [ANALYST],
    "agent list": [],
    "agent run": ["data-analyst", "How many orders?"],
}


def org_commands() -> Iterator[str]:
    for name in COMMANDS:
        command = load(name)
        subcommands = getattr(command, "commands", {name: command})
        for sub_name, sub in subcommands.items():
            if any(param.name == "org" for param in sub.params):
                yield name if sub is command else f"{name} {sub_name}"


def test_every_org_command_is_exercised() -> None:
    assert sorted(org_commands()) == sorted(ARGUMENTS)


@pytest.mark.parametrize("command", sorted(ARGUMENTS))
def test_an_unknown_organization_is_one_message_and_exit_2(command: str, db_url: str, tmp_path: Path) -> None:
    env = {"VAI_DATABASE_URL": db_url, "VAI_DATA_DIR": str(tmp_path / "var")}
    args = [*command.split(), *ARGUMENTS[command], "--org", "org_nope"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr == "error: no organization org_nope\n"
    assert result.stdout == ""
