"""What the tenant-isolation test (``test_tenant_isolation.py``) needs to know about each primitive.

The test finds every /api/v1 route by itself. It fills each path parameter with a real id of organization A taken
from A's list responses (``GET <the path up to the parameter>``), so most primitives need only a seeder that
creates one object of their kind. Add here, one entry per primitive:

- ``@seeder`` an ``async def seed_<primitive>(ctx: SeedContext)`` that creates at least one object in
  ``ctx.org`` through the API (or its service). It runs for both organizations; put ``ctx.label`` in slugs and names,
  so the two organizations never share one. It may return extra path values the list responses cannot give, keyed
  by the route template up to and including the parameter: ``{"/api/v1/agents/{ref}/versions/{version_id}":
  [version_id]}``.
- ``BODIES[(method, template)]`` when the request body the test derives from the OpenAPI schema is rejected with a
  422 (say, a field with a pattern): a function of the filled path values that returns a valid body.
- ``GLOBAL_ROUTES[template]`` (with the reason) for a route whose path parameter names something every
  organization shares, such as a catalog of action kinds: another organization may read it, so no 404 is expected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import OrgHandle


@dataclass(frozen=True)
class SeedContext:
    app: FastAPI
    client: httpx.AsyncClient
    org: OrgHandle
    label: str  # "a" or "b"


ExtraPathValues = Mapping[str, Sequence[str]]
Seeder = Callable[[SeedContext], Awaitable[ExtraPathValues | None]]

SEEDERS: list[Seeder] = []

# (METHOD, path template) -> function of the filled path values returning a valid JSON body.
BODIES: dict[tuple[str, str], Callable[[Mapping[str, str]], Any]] = {}

# Path template -> why the object it names is not owned by an organization.
GLOBAL_ROUTES: dict[str, str] = {}


def seeder(fn: Seeder) -> Seeder:
    SEEDERS.append(fn)
    return fn


async def created(response: httpx.Response) -> dict[str, Any]:
    """The body of a successful create, failing the seeding with the server's answer otherwise."""
    assert response.status_code in (200, 201, 202), f"seeding failed: {response.request.url} {response.text}"
    body: dict[str, Any] = response.json()
    return body


@seeder
async def seed_api_keys(ctx: SeedContext) -> None:
    # The owner key already exists; a second one makes sure detail routes get an id that is not the caller's.
    await created(
        await ctx.client.post("/api/v1/api-keys", headers=ctx.org.headers, json={"name": f"isolation-{ctx.label}"})
    )


@seeder
async def seed_connections(ctx: SeedContext) -> None:
    await created(
        await ctx.client.post(
            "/api/v1/connections",
            headers=ctx.org.headers,
            json={
                "provider": "sqlite",
                "name": f"isolation-{ctx.label}",
                "slug": f"isolation-{ctx.label}",
                "config": {"path": "/nonexistent/isolation.db"},
            },
        )
    )


@seeder
async def seed_templates(ctx: SeedContext) -> None:
    await created(
        await ctx.client.post(
            "/api/v1/templates",
            headers=ctx.org.headers,
            json={
                "kind": "action",
                "name": f"isolation-{ctx.label}",
                "slug": f"isolation-{ctx.label}",
                "body": {"kind": "echo", "inputs": {}},
            },
        )
    )


def _automation_spec(label: str) -> dict[str, Any]:
    return {"name": f"isolation-{label}", "slug": f"isolation-{label}", "steps": [{"key": "a", "action": "echo"}]}


@seeder
async def seed_automations(ctx: SeedContext) -> None:
    automation = await created(
        await ctx.client.post("/api/v1/automations", headers=ctx.org.headers, json=_automation_spec(ctx.label))
    )
    await created(
        await ctx.client.post(f"/api/v1/automations/{automation['id']}/runs", headers=ctx.org.headers, json={})
    )


BODIES[("PUT", "/api/v1/automations/{ref}")] = lambda _values: _automation_spec("other")


@seeder
async def seed_action_runs(ctx: SeedContext) -> None:
    # A write-risk kind parks in AWAITING_APPROVAL, so approve/reject/cancel routes have a live run to aim at.
    await created(
        await ctx.client.post(
            "/api/v1/action-runs",
            headers=ctx.org.headers,
            json={"kind": "http_request", "inputs": {"method": "GET", "url": "https://example.com/"}},
        )
    )
    await created(
        await ctx.client.post(
            "/api/v1/action-runs", headers=ctx.org.headers, json={"kind": "echo", "inputs": {"x": ctx.label}}
        )
    )


@seeder
async def seed_agent_specs(ctx: SeedContext) -> None:
    markdown = (
        f"---\nname: Isolation {ctx.label}\nslug: isolation-{ctx.label}\nmode: primary\ntools:\n"
        "  - generate_query\n---\n\nAnswer questions.\n"
    )
    await created(await ctx.client.post("/api/v1/agents/specs", headers=ctx.org.headers, json={"markdown": markdown}))
    # A run of it (with no LLM connection it ends at once, FAILED no_model: a real run to aim every route at).
    run = {"agent": f"isolation-{ctx.label}", "input": "Anything?"}
    await created(await ctx.client.post("/api/v1/agents/runs", headers=ctx.org.headers, json=run))


@seeder
async def seed_lake_table(ctx: SeedContext) -> ExtraPathValues:
    # Lake tables are files, not rows: publish one straight into the organization's lake.
    from tests.data.conftest import publish_rows
    from virtuousai.data.lake import TenantLake

    lake = TenantLake(ctx.app.state.settings.lake_dir, ctx.org.org_id)
    publish_rows(lake, f"bronze.iso_{ctx.label}.orders", [{"id": 1, "total": 9.5}])
    return {"/api/v1/datasets/{layer}": ["bronze"], "/api/v1/datasets/{layer}/{table}": [f"iso_{ctx.label}.orders"]}


@seeder
async def seed_flashboards(ctx: SeedContext) -> ExtraPathValues:
    # A tile's SQL is checked against the organization's lake when it is saved: publish its table first.
    from tests.data.conftest import publish_rows
    from virtuousai.data.lake import TenantLake

    lake = TenantLake(ctx.app.state.settings.lake_dir, ctx.org.org_id)
    publish_rows(lake, f"gold.fb_{ctx.label}.sales", [{"day": "2026-12-01", "total": 9.5}])
    tile = {
        "title": f"isolation-{ctx.label}",
        "sql": f"SELECT day, total FROM gold.fb_{ctx.label}.sales",
        "chart": {"mark": "bar", "encoding": {"x": {"field": "day"}, "y": {"field": "total"}}},
    }
    board = await created(
        await ctx.client.post(
            "/api/v1/flashboards", headers=ctx.org.headers, json={"title": f"isolation-{ctx.label}", "tiles": [tile]}
        )
    )
    await created(await ctx.client.post(f"/api/v1/flashboards/{board['id']}/refresh", headers=ctx.org.headers))
    return {"/api/v1/flashboards/{flashboard_id}/tiles/{tile}": ["0"]}


BODIES[("PUT", "/api/v1/flashboards/{flashboard_id}")] = lambda _values: {"title": "other", "tiles": []}

# Each organization has its own policy for every kind in the shared catalog: B setting "echo" is B's own policy.
GLOBAL_ROUTES["/api/v1/action-policy/{kind}"] = "kinds are a catalog shared by every organization"
