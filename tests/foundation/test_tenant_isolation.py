"""Tenant isolation over every /api/v1 route the app has, found at run time.

Organization B calls every route that takes a path parameter with organization A's real ids (and ``slug:`` forms of
``{ref}`` parameters) and must get 404 problem+json, exactly as for an id that does not exist. Every read B makes
with its own ids must not mention any id of A, and A's objects must be unchanged afterwards. New routes are
covered automatically; primitives register how to create their objects in ``isolation_registry.py``.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from tests.conftest import OrgHandle
from tests.foundation.helpers import (
    Endpoint,
    api_endpoints,
    assert_problem,
    fill_path,
    list_endpoints,
    template_through,
)
from tests.foundation.isolation_registry import BODIES, GLOBAL_ROUTES, SEEDERS, SeedContext
from tests.foundation.sample_bodies import sample_request_body, sample_required_query
from virtuousai.ids import PREFIXES, new_id

# A route that streams to the wrong organization would never end; turn that into a failure, not a hang.
REQUEST_TIMEOUT_S = 10.0
# Fields that change when A merely reads its own objects.
# Fields that change with the clock, not with anything another organization could do.
VOLATILE_FIELDS = {"last_used_at", "elapsed_ms", "freshness_s"}
MISSING_NUMBER = 987_654_321


@dataclass
class Tenant:
    """One organization as the test sees it: its key, and the path values its own routes accept."""

    label: str
    handle: OrgHandle
    extra_values: dict[str, list[str]] = field(default_factory=dict)  # from seeders, by template through the param
    ids: set[str] = field(default_factory=set)  # every id seen in its list responses

    @property
    def headers(self) -> dict[str, str]:
        return self.handle.headers


@dataclass
class Filling:
    values: dict[str, str]
    unfilled: list[str]  # params that got an id that does not exist, for want of a real one
    ref_forms: dict[str, list[str]]  # param -> other accepted forms of the chosen object (``slug:…``)


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    query: dict[str, Any] | None = None,
) -> httpx.Response:
    request = client.request(method, url, headers=headers, json=body, params=query)
    try:
        return await asyncio.wait_for(request, REQUEST_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"{method} {url} did not answer within {REQUEST_TIMEOUT_S}s (streaming?)") from None


def missing_value(endpoint: Endpoint, param: str, like: str | None = None) -> str:
    """A well-formed value that names nothing: for ids, the prefix of ``like`` when known, else guessed from the
    parameter's name; for numbers, a number nobody reaches."""
    if endpoint.param_type(param) is int:
        return str(MISSING_NUMBER)
    if like is not None and "_" in like:
        return new_id(like.split("_", 1)[0])
    stem = param.removesuffix("_id")
    return new_id(PREFIXES.get(stem, stem[:4] or "id"))


def path_value(item: dict[str, Any], param: str) -> str | None:
    """What ``item`` (from a list) puts in path parameter ``param``: its field of that name (``{number}``,
    ``{slug}``), else its id."""
    value = item.get(param, item.get("id"))
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def is_ref_param(param: str) -> bool:
    return param == "ref" or param.endswith("_ref")


def reads_json(endpoint: Endpoint) -> bool:
    """A GET that answers a JSON model (not a stream), so it is safe and meaningful to read and compare."""
    model = endpoint.route.response_model
    return endpoint.method == "GET" and isinstance(model, type) and issubclass(model, BaseModel)


class Explorer:
    """Reads the app's routes and fills their path parameters with one organization's real values."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.client = client
        self.endpoints = api_endpoints(app)
        self.collections = {e.path for e in list_endpoints(app)}
        self.openapi = app.openapi()

    async def list_items(self, tenant: Tenant, url: str) -> list[dict[str, Any]]:
        response = await call(self.client, "GET", url, tenant.headers)
        assert response.status_code == 200, f"{tenant.label}: GET {url} -> {response.status_code} {response.text}"
        items: list[dict[str, Any]] = [i for i in response.json()["items"] if isinstance(i, dict)]
        tenant.ids.update(i["id"] for i in items if isinstance(i.get("id"), str))
        return items

    async def harvest(self, tenant: Tenant) -> None:
        for collection in sorted(self.collections):
            if "{" not in collection:
                await self.list_items(tenant, collection)
        # Extra path values (version numbers and the like) are not ids: both tenants may well have a "1".

    async def fill(self, tenant: Tenant, endpoint: Endpoint) -> Filling:
        filling = Filling(values={}, unfilled=[], ref_forms={})
        for param in endpoint.params:
            through = template_through(endpoint.path, param)
            candidates = list(tenant.extra_values.get(through, []))
            items: list[dict[str, Any]] = []
            collection = through[: through.rfind("/")]
            # Under a parent that got a missing id, the collection itself answers 404: nothing to list.
            if not candidates and collection in self.collections and not filling.unfilled:
                items = await self.list_items(tenant, fill_path(collection, filling.values))
                candidates = [v for v in (path_value(i, param) for i in items) if v is not None]
            if not candidates:
                filling.values[param] = missing_value(endpoint, param)
                filling.unfilled.append(param)
                continue
            filling.values[param] = candidates[0]
            chosen = next((i for i in items if path_value(i, param) == candidates[0]), {})
            if is_ref_param(param) and isinstance(chosen.get("slug"), str):
                filling.ref_forms[param] = [f"slug:{chosen['slug']}"]
        return filling

    def query(self, endpoint: Endpoint) -> dict[str, Any]:
        return sample_required_query(self.openapi, endpoint.method, endpoint.path)

    def body(self, endpoint: Endpoint, values: dict[str, str]) -> Any:
        if not endpoint.has_body:
            return None
        custom = BODIES.get((endpoint.method, endpoint.path))
        if custom is not None:
            return custom(values)
        return sample_request_body(self.openapi, endpoint.method, endpoint.path)

    async def snapshot(self, tenant: Tenant) -> dict[str, Any]:
        """Every JSON read of ``tenant``'s own objects, to compare before and after the other's attempts."""
        seen: dict[str, Any] = {}
        for endpoint in self.endpoints:
            if not reads_json(endpoint):
                continue
            filling = await self.fill(tenant, endpoint)
            if filling.unfilled:
                continue
            url = fill_path(endpoint.path, filling.values)
            response = await call(self.client, "GET", url, tenant.headers, query=self.query(endpoint))
            seen[url] = (response.status_code, strip_volatile(response.json()))
        return seen


def strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


async def seed(app: FastAPI, client: httpx.AsyncClient, tenant: Tenant) -> None:
    for seeder in SEEDERS:
        extra = await seeder(SeedContext(app=app, client=client, org=tenant.handle, label=tenant.label))
        for template, values in (extra or {}).items():
            tenant.extra_values.setdefault(template, []).extend(values)


async def test_other_organizations_ids_answer_404_on_every_route(
    app: FastAPI, client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    owner, intruder = Tenant("a", org), Tenant("b", other_org)
    await seed(app, client, owner)
    await seed(app, client, intruder)
    explorer = Explorer(app, client)
    await explorer.harvest(owner)
    await explorer.harvest(intruder)
    shared = owner.ids & intruder.ids
    assert not shared, f"both organizations' lists show {sorted(shared)}: a list is not scoped to its tenant"
    before = await explorer.snapshot(owner)

    stale = set(GLOBAL_ROUTES) - {e.path for e in explorer.endpoints}
    assert not stale, f"GLOBAL_ROUTES names routes the app does not have: {sorted(stale)}"

    failures: list[str] = []
    checked: list[str] = []
    only_missing_ids: list[str] = []
    exempt: list[str] = []
    with_params = [e for e in explorer.endpoints if e.params]
    for endpoint in with_params:
        if endpoint.path in GLOBAL_ROUTES:
            exempt.append(f"{endpoint}  ({GLOBAL_ROUTES[endpoint.path]})")
            continue
        filling = await explorer.fill(owner, endpoint)
        intruder_filling = await explorer.fill(intruder, endpoint)
        attempts = [filling.values]
        for param, forms in filling.ref_forms.items():
            # A slug B also uses names B's own object; only A-only slugs must be invisible to B.
            theirs = set(intruder_filling.ref_forms.get(param, []))
            attempts += [filling.values | {param: form} for form in forms if form not in theirs]
        attempts.append({p: missing_value(endpoint, p, like=v) for p, v in filling.values.items()})
        if any(is_ref_param(p) for p in endpoint.params):
            attempts.append(filling.values | {p: "slug:no-such-slug" for p in endpoint.params if is_ref_param(p)})

        answers = []
        for values in attempts:
            url = fill_path(endpoint.path, values)
            body, query = explorer.body(endpoint, values), explorer.query(endpoint)
            response = await call(client, endpoint.method, url, intruder.headers, body, query)
            failure = judge(endpoint, url, response)
            if failure:
                failures.append(failure)
            else:
                answers.append({k: response.json()[k] for k in ("type", "title", "status")})
        if len({json.dumps(a, sort_keys=True) for a in answers}) > 1:
            failures.append(f"{endpoint}: another organization's id and a missing id answer differently: {answers}")
        checked.append(str(endpoint))
        if filling.unfilled:
            only_missing_ids.append(f"{endpoint}  (no real value for {', '.join(filling.unfilled)})")

    print("\ntenant isolation: checked", len(checked), "routes")
    for line in checked:
        print("  ", line)
    for title, lines in (("exempt (global)", exempt), ("checked with missing ids only", only_missing_ids)):
        if lines:
            print(f"tenant isolation: {title}:")
            for line in lines:
                print("  ", line)
    if only_missing_ids:
        warnings.warn(
            "tenant isolation: no real id of another organization for "
            + "; ".join(only_missing_ids)
            + " — add a seeder in tests/foundation/isolation_registry.py",
            stacklevel=1,
        )

    assert checked, "no route with a path parameter was checked"
    assert "GET /api/v1/api-keys/{key_id}" in checked
    accounted = set(checked) | {str(e) for e in with_params if e.path in GLOBAL_ROUTES}
    assert accounted == {str(e) for e in with_params}, "a route with a path parameter was skipped"
    assert not failures, "tenant isolation failures:\n" + "\n".join(failures)

    await reads_never_mention(explorer, reader=intruder, other=owner)
    assert await explorer.snapshot(owner) == before, "another organization's requests changed this one's objects"


def judge(endpoint: Endpoint, url: str, response: httpx.Response) -> str | None:
    """None when ``response`` is the 404 problem another organization must get; else what is wrong."""
    if response.status_code == 404:
        try:
            assert_problem(response, 404)
        except AssertionError as exc:
            return f"{endpoint.method} {url}: 404 is not a proper problem+json: {exc}"
        return None
    invalid_at = (
        {str(e["loc"][0]) for e in response.json().get("errors", []) if e.get("loc")}
        if response.status_code == 422
        else set()
    )
    if invalid_at & {"body", "query"}:
        return (
            f"{endpoint.method} {url}: the sample body or query was rejected, so the lookup was never reached; add "
            f"BODIES[({endpoint.method!r}, {endpoint.path!r})] in isolation_registry.py: {response.text}"
        )
    return f"{endpoint.method} {url}: another organization's id answered {response.status_code}: {response.text}"


async def reads_never_mention(explorer: Explorer, *, reader: Tenant, other: Tenant) -> None:
    """Every JSON read ``reader`` makes with its own values (lists above all) leaves out every id of ``other``."""
    secrets = other.ids | {other.handle.org_id, other.handle.user_id}
    assert other.ids, "the other organization has no objects, so this would prove nothing"
    reads = 0
    for endpoint in explorer.endpoints:
        if not reads_json(endpoint):
            continue
        filling = await explorer.fill(reader, endpoint)
        url = fill_path(endpoint.path, filling.values)
        response = await call(explorer.client, "GET", url, reader.headers, query=explorer.query(endpoint))
        leaked = sorted(s for s in secrets if s in response.text)
        assert not leaked, f"GET {url} as organization {reader.label} shows the other organization's {leaked}"
        reads += 1
    assert reads >= len(explorer.collections)
