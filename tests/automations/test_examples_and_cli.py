"""The examples in examples/automations run to completion, and ``vai automation`` applies, starts and lists."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.automation_fixtures import Automations, steps_by_key
from virtuousai.cli.main import app as cli
from virtuousai.orgs.service import create_organization
from virtuousai.store.engine import make_engine, make_sessionmaker

EXAMPLES = Path(__file__).parents[2] / "examples" / "automations"


@pytest.mark.parametrize(
    ("file", "params"), [("diamond.yaml", {"day": "2026-01-31"}), ("fan_out.yaml", {}), ("nightly.yaml", {})]
)
async def test_examples_run_to_completion(automations: Automations, file: str, params: dict[str, object]) -> None:
    spec = yaml.safe_load((EXAMPLES / file).read_text())
    response = await automations.client.post("/api/v1/automations", json=spec, headers=automations.org.headers)
    assert response.status_code == 201, response.text
    run = await automations.wait((await automations.start(spec["slug"], params))["id"])
    assert run["status"] == "COMPLETED", run
    steps = steps_by_key(run)
    if file == "diamond.yaml":
        assert steps["report"]["output"]["summary"] == "Orders on 2026-01-31: 2 orders"
    elif file == "fan_out.yaml":
        assert steps["merge"]["output"] == {"shops": "north, south, east, west, centre", "done": 5}
    else:
        assert steps["alert"]["status"] == "COMPLETED"
        assert steps["cleanup"]["output"] == {"export": "FAILED", "alerted": True}


def test_cli_apply_run_and_list(db_url: str, tmp_path: Path) -> None:
    async def make_org() -> str:
        engine = make_engine(db_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return (await create_organization(session, "CLI org", "cli@example.com")).organization.id
        finally:
            await engine.dispose()

    org = asyncio.run(make_org())
    env = {"VAI_DATABASE_URL": db_url, "VAI_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    diamond = str(EXAMPLES / "diamond.yaml")
    first = runner.invoke(cli, ["automation", "apply", diamond, "--org", org], env=env)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("created: diamond (aut_")
    again = runner.invoke(cli, ["automation", "apply", diamond, "--org", org, "--json"], env=env)
    assert json.loads(again.output)["outcome"] == "unchanged"

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nslug: x\nsteps:\n  - key: a\n    action: teleport\n")
    refused = runner.invoke(cli, ["automation", "apply", str(bad), "--org", org], env=env)
    assert refused.exit_code == 2
    assert "file.steps.0.action: unknown action kind 'teleport'" in refused.output

    started = runner.invoke(cli, ["automation", "run", "diamond", "--org", org, "--param", "day=monday"], env=env)
    assert started.exit_code == 0, started.output
    run_id = started.output.split()[-1]
    wrong = runner.invoke(cli, ["automation", "run", "diamond", "--org", org, "--param", "day=3"], env=env)
    assert wrong.exit_code == 2  # 3 is a number; the schema wants a string
    assert wrong.output == 'error: --param day: 3 is not of type "string"\n'  # once, in the CLI's words

    listed = runner.invoke(cli, ["automation", "runs", "--org", org, "--json"], env=env)
    assert [r["id"] for r in json.loads(listed.output)] == [run_id]
