"""Authentication (every 401 case) and role checks (403), on every /api/v1 route that exists."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.foundation.helpers import api_endpoints, assert_problem, fill_path
from virtuousai.orgs.service import generate_key
from virtuousai.orgs.tables import ApiKey
from virtuousai.timeutil import utcnow


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(client: httpx.AsyncClient, owner: OrgHandle, **fields: object) -> dict[str, str]:
    response = await client.post("/api/v1/api-keys", headers=owner.headers, json=fields)
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    return created


def assert_unauthorized(response: httpx.Response, reason: str) -> None:
    body = assert_problem(response, 401, "unauthorized")
    assert body["reason"] == reason
    assert response.headers["www-authenticate"] == "Bearer"


MALFORMED = {
    "wrong scheme": "Basic dXNlcjpwYXNz",
    "scheme only": "Bearer",
    "empty token": "Bearer ",
    "no scheme": "vai_abcdefghijkl_" + "a" * 43,
    "not our shape": "Bearer not-a-key",
    "short key": "Bearer vai_short_secret",
    "uppercase prefix": "Bearer vai_ABCDEFGHIJKL_" + "a" * 43,
    "token scheme": "Token vai_abcdefghijkl_" + "a" * 43,
}


async def test_malformed_credentials_answer_401(client: httpx.AsyncClient) -> None:
    for case, authorization in MALFORMED.items():
        response = await client.get("/api/v1/me", headers={"Authorization": authorization})
        try:
            assert_unauthorized(response, "malformed")
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from exc


async def test_missing_header_answers_401(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/api/v1/me"), "missing")


async def test_unknown_key_answers_401(client: httpx.AsyncClient, org: OrgHandle) -> None:
    _, never_issued = generate_key()
    assert_unauthorized(await client.get("/api/v1/me", headers=bearer(never_issued)), "unknown")
    # A real key's prefix with a wrong secret is just as unknown: the prefix alone is not a credential.
    forged = org.api_key[: len("vai_") + 12 + 1] + "A" * 43  # vai_<prefix>_ of the real key, another secret
    assert forged != org.api_key
    assert_unauthorized(await client.get("/api/v1/me", headers=bearer(forged)), "unknown")


async def test_revoked_key_answers_401(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await create_key(client, org, name="to revoke")
    assert (await client.get("/api/v1/me", headers=bearer(created["key"]))).status_code == 200
    revoked = await client.post(f"/api/v1/api-keys/{created['id']}/revoke", headers=org.headers)
    assert revoked.status_code == 200, revoked.text
    assert_unauthorized(await client.get("/api/v1/me", headers=bearer(created["key"])), "revoked")
    # The owner's own key is untouched.
    assert (await client.get("/api/v1/me", headers=org.headers)).status_code == 200


async def test_expired_key_answers_401(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = await create_key(client, org, name="short-lived", expires_at=soon)
    assert (await client.get("/api/v1/me", headers=bearer(created["key"]))).status_code == 200
    # Move the expiry into the past in the database instead of waiting for it.
    async with app.state.sessions() as session:
        await session.execute(
            sa.update(ApiKey).where(ApiKey.id == created["id"]).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    # A direct edit of the database is not announced: the key verified above would be trusted for the cache's
    # lifetime (tests/orgs/test_verified_keys.py), so forget it as a real expiry (the clock passing) would.
    app.state.verified_keys.clear()
    assert_unauthorized(await client.get("/api/v1/me", headers=bearer(created["key"])), "expired")


async def test_every_api_route_requires_a_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    checked, open_routes = [], []
    for endpoint in api_endpoints(app):
        url = fill_path(endpoint.path, {name: "x" for name in endpoint.params})
        response = await client.request(endpoint.method, url)
        if response.status_code == 401:
            assert_unauthorized(response, "missing")
        else:
            open_routes.append(f"{endpoint} answered {response.status_code}")
        checked.append(str(endpoint))
    assert "GET /api/v1/me" in checked
    assert not open_routes, "routes under /api/v1 that answer without a key:\n" + "\n".join(open_routes)


@pytest.mark.parametrize("role", ["viewer", "member"])
async def test_roles_below_admin_cannot_manage_keys(client: httpx.AsyncClient, org: OrgHandle, role: str) -> None:
    weak = await create_key(client, org, name=role, role=role)
    headers = bearer(weak["key"])
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["role"] == role

    owner_key_id = (await client.get("/api/v1/me", headers=org.headers)).json()["api_key_id"]
    attempts = [
        ("GET", "/api/v1/api-keys", None),
        ("POST", "/api/v1/api-keys", {"name": "escalate"}),
        ("GET", f"/api/v1/api-keys/{owner_key_id}", None),
        ("POST", f"/api/v1/api-keys/{owner_key_id}/revoke", None),
        ("POST", f"/api/v1/api-keys/{weak['id']}/revoke", None),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, headers=headers, json=body)
        assert_problem(response, 403, "forbidden")
    # Nothing changed: the owner's key still works and no key was added.
    listed = (await client.get("/api/v1/api-keys", headers=org.headers)).json()["items"]
    assert len(listed) == 2
    assert all(k["revoked_at"] is None for k in listed)


async def test_admin_key_may_manage_keys(client: httpx.AsyncClient, org: OrgHandle) -> None:
    admin = await create_key(client, org, name="admin", role="admin")
    headers = bearer(admin["key"])
    assert (await client.get("/api/v1/api-keys", headers=headers)).status_code == 200
    issued = await client.post("/api/v1/api-keys", headers=headers, json={"name": "by admin"})
    assert issued.status_code == 201, issued.text
    assert issued.json()["role"] == "admin", "a key defaults to its creator's effective role, not the member's"


async def test_key_role_cannot_exceed_its_creator(client: httpx.AsyncClient, org: OrgHandle) -> None:
    admin = await create_key(client, org, name="admin", role="admin")
    response = await client.post("/api/v1/api-keys", headers=bearer(admin["key"]), json={"role": "owner"})
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "role"]


async def test_expiry_without_timezone_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for expires_at in ("2999-01-01T00:00:00", "2000-01-01T00:00:00"):
        response = await client.post("/api/v1/api-keys", headers=org.headers, json={"expires_at": expires_at})
        body = assert_problem(response, 422, "validation-error")
        assert body["errors"][0]["loc"] == ["body", "expires_at"]
