"""The agent specs API (seeds/002): create, versions, validation against the organization, delete, stats, tools."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import OrgHandle

SPECS = "/api/v1/agents/specs"


def spec_markdown(
    slug: str,
    *,
    mode: str = "primary",
    tools: tuple[str, ...] = ("generate_query",),
    sub_agents: tuple[str, ...] = (),
    model: str | None = None,
    body: str = "# Goal\n\nAnswer questions.",
) -> str:
    lines = ["---", f"name: {slug.title()}", f"slug: {slug}", f"mode: {mode}"]
    if model:
        lines.append(f"model: {model}")
    lines.append("tools:")
    lines += [f"  - {tool}" for tool in tools]
    if sub_agents:
        lines.append("sub_agents:")
        lines += [f"  - {sub}" for sub in sub_agents]
    return "\n".join([*lines, "---", "", body, ""])


async def create(client: httpx.AsyncClient, org: OrgHandle, markdown: str) -> dict[str, Any]:
    response = await client.post(SPECS, headers=org.headers, json={"markdown": markdown})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_and_get_round_trips_the_markdown(client: httpx.AsyncClient, org: OrgHandle) -> None:
    markdown = spec_markdown("sql-expert", mode="subagent", tools=("generate_query", "explain_schema"))
    created = await create(client, org, markdown)
    assert created["id"].startswith("agt_") and created["version"] == 1
    fetched = (await client.get(f"{SPECS}/{created['id']}", headers=org.headers)).json()
    assert fetched["markdown"] == markdown
    assert (fetched["slug"], fetched["mode"], fetched["tools"]) == (
        "sql-expert",
        "subagent",
        ["generate_query", "explain_schema"],
    )
    assert fetched["instructions"] == "# Goal\n\nAnswer questions."
    by_slug = await client.get(f"{SPECS}/slug:sql-expert", headers=org.headers)
    assert by_slug.json()["id"] == created["id"]


async def test_each_update_is_a_new_immutable_version(client: httpx.AsyncClient, org: OrgHandle) -> None:
    first = spec_markdown("helper", body="Version one.")
    created = await create(client, org, first)
    second = spec_markdown("helper", body="Version two.", tools=("generate_query", "explain_schema"))
    updated = await client.put(f"{SPECS}/{created['id']}", headers=org.headers, json={"markdown": second})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["id"], updated.json()["version"]) == (created["id"], 2)
    assert (await client.get(f"{SPECS}/{created['id']}", headers=org.headers)).json()["markdown"] == second
    versions = (await client.get(f"{SPECS}/{created['id']}/versions", headers=org.headers)).json()["items"]
    assert [(v["version"], v["markdown"]) for v in versions] == [(2, second), (1, first)]
    assert versions[1]["instructions"] == "Version one."


async def test_an_update_cannot_change_the_slug(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await create(client, org, spec_markdown("helper"))
    response = await client.put(
        f"{SPECS}/{created['id']}", headers=org.headers, json={"markdown": spec_markdown("other")}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "markdown", "slug"]


async def test_invalid_spec_is_422_with_paths_and_lines_and_nothing_is_stored(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    markdown = spec_markdown("bad", tools=("generate_query", "teleport"))
    response = await client.post(SPECS, headers=org.headers, json={"markdown": markdown})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    (error,) = response.json()["errors"]
    assert (error["loc"], error["line"]) == (["body", "markdown", "tools", 1], 7)
    assert (await client.get(SPECS, headers=org.headers)).json()["items"] == []


async def test_slug_already_used_is_422(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await create(client, org, spec_markdown("twin"))
    response = await client.post(SPECS, headers=org.headers, json={"markdown": spec_markdown("twin", body="again")})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["loc"], error["line"]) == (["body", "markdown", "slug"], 3)


async def test_sub_agents_must_exist_in_the_same_organization(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    await create(client, other_org, spec_markdown("sql-expert", mode="subagent"))
    caller = spec_markdown("analyst", tools=("call_agent",), sub_agents=("sql-expert",))
    response = await client.post(SPECS, headers=org.headers, json={"markdown": caller})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["loc"], error["line"], error["type"]) == (["body", "markdown", "sub_agents", 0], 8, "unknown_agent")
    await create(client, org, spec_markdown("sql-expert", mode="subagent"))
    assert (await client.post(SPECS, headers=org.headers, json={"markdown": caller})).status_code == 201


async def test_model_must_be_a_known_alias_or_provider_model(client: httpx.AsyncClient, org: OrgHandle) -> None:
    unknown = await client.post(SPECS, headers=org.headers, json={"markdown": spec_markdown("a", model="turbo")})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "markdown", "model"]
    assert unknown.json()["errors"][0]["line"] == 5
    await create(client, org, spec_markdown("b", model="fast"))
    await create(client, org, spec_markdown("c", model="anthropic:claude-haiku-4-5"))
    aliases = {"aliases": {"turbo": {"openai": "gpt-4.1-nano"}}}
    assert (await client.put("/api/v1/models/aliases", headers=org.headers, json=aliases)).status_code == 200
    await create(client, org, spec_markdown("a", model="turbo"))


async def test_list_filters_by_mode(client: httpx.AsyncClient, org: OrgHandle) -> None:
    await create(client, org, spec_markdown("sql-expert", mode="subagent"))
    await create(client, org, spec_markdown("analyst"))
    everything = (await client.get(SPECS, headers=org.headers)).json()["items"]
    primary = (await client.get(SPECS, headers=org.headers, params={"mode": "primary"})).json()["items"]
    assert [s["slug"] for s in everything] == ["analyst", "sql-expert"]
    assert [s["slug"] for s in primary] == ["analyst"]


async def test_delete_is_refused_while_another_agent_delegates_to_it(client: httpx.AsyncClient, org: OrgHandle) -> None:
    expert = await create(client, org, spec_markdown("sql-expert", mode="subagent"))
    analyst = await create(client, org, spec_markdown("analyst", tools=("call_agent",), sub_agents=("sql-expert",)))
    refused = await client.delete(f"{SPECS}/{expert['id']}", headers=org.headers)
    assert refused.status_code == 409
    assert refused.json()["callers"] == ["analyst"]
    assert (await client.delete(f"{SPECS}/{analyst['id']}", headers=org.headers)).status_code == 204
    assert (await client.delete(f"{SPECS}/{expert['id']}", headers=org.headers)).status_code == 204
    assert (await client.get(f"{SPECS}/{expert['id']}", headers=org.headers)).status_code == 404
    # The slug is free again once deleted.
    await create(client, org, spec_markdown("sql-expert", mode="subagent"))


async def test_stats_are_zero_until_runs_exist(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await create(client, org, spec_markdown("analyst"))
    stats = (await client.get(f"{SPECS}/{created['id']}/stats", headers=org.headers)).json()
    assert stats == {
        "spec_id": created["id"],
        "total_runs": 0,
        "success_rate": 0.0,
        "avg_duration_ms": 0.0,
        "crystallization_count": 0,
        "feedback_up": 0,
        "feedback_down": 0,
    }


@pytest.mark.parametrize(
    ("method", "suffix", "json"),
    [
        ("GET", "", None),
        ("PUT", "", {"markdown": spec_markdown("secret")}),
        ("DELETE", "", None),
        ("GET", "/versions", None),
        ("GET", "/stats", None),
    ],
)
async def test_another_organizations_spec_is_not_found(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle, method: str, suffix: str, json: Any
) -> None:
    theirs = await create(client, other_org, spec_markdown("secret"))
    for ref in (theirs["id"], "slug:secret"):
        response = await client.request(method, f"{SPECS}/{ref}{suffix}", headers=org.headers, json=json)
        assert response.status_code == 404, response.text
    assert (await client.get(f"{SPECS}/{theirs['id']}", headers=other_org.headers)).json()["version"] == 1


async def test_the_tool_catalog(client: httpx.AsyncClient, org: OrgHandle) -> None:
    listed = {t["slug"]: t for t in (await client.get("/api/v1/tools", headers=org.headers)).json()}
    # The seven of seeds/002, and the test tools these tests register (tests/agents/kinds_tools.py).
    tools = {slug: t for slug, t in listed.items() if not slug.startswith("agent_")}
    assert set(listed) - set(tools) == {"agent_lookup", "agent_send", "agent_slow"}
    assert set(tools) == {
        "generate_query",
        "explain_schema",
        "web_search",
        "fetch_page",
        "call_agent",
        "create_flashboard",
        "http_request",
    }
    assert {slug for slug, t in tools.items() if t["risk"] == "write"} == {"create_flashboard", "http_request"}
    assert tools["call_agent"]["category"] == "delegation"
