"""``/api/v1/models/aliases``: per-organization aliases, admins write, everyone reads, 422 with paths."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import OrgHandle
from virtuousai.llm.aliases import resolve

ALIASES = "/api/v1/models/aliases"


async def test_builtins_until_the_organization_sets_its_own(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    before = (await client.get(ALIASES, headers=org.headers)).json()
    assert set(before["aliases"]) == {"orchestrator", "fast"} and before["organization_aliases"] == {}
    body = {"aliases": {"fast": {"ollama-local": "llama3.1:8b"}, "reasoning": {"openai": "o4-mini"}}}
    updated = await client.put(ALIASES, headers=org.headers, json=body)
    assert updated.status_code == 200, updated.text
    after = (await client.get(ALIASES, headers=org.headers)).json()
    assert after["aliases"]["fast"] == {"ollama-local": "llama3.1:8b"}  # replaced whole, not merged
    assert after["aliases"]["reasoning"] == {"openai": "o4-mini"}
    assert "orchestrator" in after["aliases"]
    # Another organization is unaffected.
    assert (await client.get(ALIASES, headers=other_org.headers)).json()["organization_aliases"] == {}


async def test_only_admins_change_aliases(client: httpx.AsyncClient, org: OrgHandle) -> None:
    member_key = (await client.post("/api/v1/api-keys", headers=org.headers, json={"role": "member"})).json()["key"]
    headers = {"Authorization": f"Bearer {member_key}"}
    assert (await client.get(ALIASES, headers=headers)).status_code == 200
    assert (await client.put(ALIASES, headers=headers, json={"aliases": {}})).status_code == 403


@pytest.mark.parametrize(
    ("aliases", "loc"),
    [
        ({"Fast!": {"openai": "x"}}, ["body", "aliases", "Fast!"]),
        ({"fast": {}}, ["body", "aliases", "fast"]),
        ({"fast": {"openai": "has space"}}, ["body", "aliases", "fast", "openai"]),
        ({"fast": {"Open AI": "x"}}, ["body", "aliases", "fast", "Open AI"]),
    ],
)
async def test_invalid_aliases_are_422_with_paths(
    client: httpx.AsyncClient, org: OrgHandle, aliases: dict[str, object], loc: list[str]
) -> None:
    response = await client.put(ALIASES, headers=org.headers, json={"aliases": aliases})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc


def test_resolution_of_aliases_and_concrete_models() -> None:
    aliases = {"fast": {"openai": "gpt-4.1-mini", "local": "llama3"}}
    fast = resolve("fast", aliases)
    assert fast.model_for("openai", "primary-openai", None) == "gpt-4.1-mini"
    assert fast.model_for("openai_compatible", "local", None) == "llama3"  # by connection slug
    assert fast.model_for("anthropic", "claude", "claude-haiku-4-5") == "claude-haiku-4-5"  # the connection's default
    pinned = resolve("anthropic:claude-sonnet-4-5", aliases)
    assert pinned.model_for("anthropic", None, "claude-haiku-4-5") == "claude-sonnet-4-5"
    assert pinned.model_for("openai", None, "gpt-4.1") is None  # a pinned model is not served by another vendor
    with pytest.raises(ValueError, match="unknown model alias"):
        resolve("turbo", aliases)
    with pytest.raises(ValueError, match="orchestrator"):
        resolve(None, aliases)  # the default alias must exist too
