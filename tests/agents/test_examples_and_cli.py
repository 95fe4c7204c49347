"""The example agents and ``vai agent validate | apply | list``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.conftest import OrgHandle
from virtuousai.agents.examples import EXAMPLES_DIR, load_example_agents, read_examples
from virtuousai.cli.main import app as cli
from virtuousai.orgs.service import create_organization
from virtuousai.store.engine import make_engine, make_sessionmaker
from virtuousai.store.tenant import TenantContext


def test_examples_are_ordered_after_the_agents_they_delegate_to() -> None:
    slugs = [document.slug for document, _ in read_examples()]
    assert sorted(slugs) == ["data-analyst", "research-bot", "sql-expert"]
    assert slugs.index("sql-expert") < slugs.index("data-analyst") < slugs.index("research-bot")


async def test_load_example_agents_is_idempotent(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    tenant = TenantContext(tenant_id=org.org_id)
    async with app.state.sessions() as session:
        assert sorted(await load_example_agents(session, tenant)) == ["data-analyst", "research-bot", "sql-expert"]
    async with app.state.sessions() as session:
        assert await load_example_agents(session, tenant) == []
    picker = (await client.get("/api/v1/agents/specs", headers=org.headers, params={"mode": "primary"})).json()
    assert sorted(s["slug"] for s in picker["items"]) == ["data-analyst", "research-bot"]
    analyst = (await client.get("/api/v1/agents/specs/slug:data-analyst", headers=org.headers)).json()
    assert analyst["markdown"] == (EXAMPLES_DIR / "data-analyst.md").read_text()


async def _new_org(db_url: str) -> str:
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            created = await create_organization(session, "CLI org", "cli@example.com")
        return created.organization.id
    finally:
        await engine.dispose()


def test_cli_validate_apply_and_list(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"VAI_DATABASE_URL": db_url, "VAI_DATA_DIR": str(tmp_path / "var")}
    org_id = asyncio.run(_new_org(db_url))

    broken = tmp_path / "broken.md"
    broken.write_text("---\nname: Broken\nslug: broken\nmode: subagent\ntools:\n  - call_agent\n---\n\nHi.\n")
    result = runner.invoke(cli, ["agent", "validate", str(broken)], env=env)
    assert result.exit_code == 1
    assert f"{broken}:6: tools.0: a subagent cannot use call_agent" in result.output

    analyst = EXAMPLES_DIR / "data-analyst.md"
    result = runner.invoke(cli, ["agent", "validate", str(analyst), "--org", org_id], env=env)
    assert result.exit_code == 1  # sql-expert does not exist in the organization yet
    assert "sub_agents.0: no agent with slug 'sql-expert'" in result.output

    for name in ("sql-expert", "data-analyst"):
        result = runner.invoke(
            cli, ["agent", "apply", str(EXAMPLES_DIR / f"{name}.md"), "--org", org_id, "--json"], env=env
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["version"] == 1
    again = runner.invoke(cli, ["agent", "apply", str(analyst), "--org", org_id, "--json"], env=env)
    assert json.loads(again.output)["version"] == 2

    listed = runner.invoke(cli, ["agent", "list", "--org", org_id, "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert {(row["slug"], row["version"]) for row in json.loads(listed.output)} == {
        ("sql-expert", 1),
        ("data-analyst", 2),
    }
