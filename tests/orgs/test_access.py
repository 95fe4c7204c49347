"""Organizations, API keys and authentication."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.conftest import OrgHandle
from virtuousai.timeutil import utcnow


async def test_me_describes_the_caller(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.get("/api/v1/me", headers=org.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organization"]["id"] == org.org_id
    assert body["user"]["id"] == org.user_id
    assert body["role"] == "owner"
    assert body["timezone"] == "UTC"
    assert response.headers["x-request-id"].startswith("req_")


async def test_created_key_is_shown_once_and_works(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = await client.post("/api/v1/api-keys", headers=org.headers, json={"name": "ci", "role": "viewer"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    fetched = await client.get(f"/api/v1/api-keys/{created.json()['id']}", headers=org.headers)
    assert fetched.status_code == 200
    assert "key" not in fetched.json()
    assert key not in fetched.text
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.json()["role"] == "viewer"


async def test_revoked_key_answers_401(client: httpx.AsyncClient, org: OrgHandle) -> None:
    created = (await client.post("/api/v1/api-keys", headers=org.headers, json={})).json()
    revoked = await client.post(f"/api/v1/api-keys/{created['id']}/revoke", headers=org.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert response.status_code == 401
    assert response.json()["reason"] == "revoked"


async def test_key_list_paginates_with_cursor(client: httpx.AsyncClient, org: OrgHandle) -> None:
    for i in range(4):
        await client.post("/api/v1/api-keys", headers=org.headers, json={"name": f"k{i}"})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/api-keys", headers=org.headers, params=params)).json()
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


async def test_expiry_must_be_in_the_future(client: httpx.AsyncClient, org: OrgHandle) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    response = await client.post("/api/v1/api-keys", headers=org.headers, json={"expires_at": past})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "expires_at"]
