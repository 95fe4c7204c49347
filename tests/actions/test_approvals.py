"""Approval gates: write kinds wait in AWAITING_APPROVAL (per the organization's policy); approve, reject, and an
approval of inputs other than the run's is refused."""

from __future__ import annotations

import httpx

from tests.actions.conftest import key_with_role
from tests.conftest import OrgHandle

RUNS = "/api/v1/action-runs"


async def create_write(client: httpx.AsyncClient, org: OrgHandle, value: str = "v") -> dict:  # type: ignore[type-arg]
    response = await client.post(RUNS, headers=org.headers, json={"kind": "test_write", "inputs": {"value": value}})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_write_kind_waits_for_approval_then_runs(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = await create_write(client, org)
    assert run["status"] == "AWAITING_APPROVAL"
    assert run["requires_approval"] is True
    approved = await client.post(
        f"{RUNS}/{run['id']}/approve", headers=org.headers, json={"inputs_hash": run["inputs_hash"]}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == org.user_id
    assert approved.json()["status"] in ("PENDING", "RUNNING", "COMPLETED")
    events = (await client.get(f"{RUNS}/{run['id']}/events", headers=org.headers)).text
    assert '"to": "PENDING"' in events and '"to": "COMPLETED"' in events
    done = (await client.get(f"{RUNS}/{run['id']}", headers=org.headers)).json()
    assert done["output"] == {"written": "v", "idempotency_key": run["id"]}


async def test_an_approval_of_other_inputs_is_refused(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = await create_write(client, org, "pay 10")
    other = await create_write(client, org, "pay 10000")
    stale = await client.post(
        f"{RUNS}/{run['id']}/approve", headers=org.headers, json={"inputs_hash": other["inputs_hash"]}
    )
    assert stale.status_code == 409
    assert stale.json()["reason"] == "stale_inputs_hash"
    assert (await client.get(f"{RUNS}/{run['id']}", headers=org.headers)).json()["status"] == "AWAITING_APPROVAL"


async def test_reject_cancels_the_run_with_the_reason(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = await create_write(client, org)
    rejected = await client.post(
        f"{RUNS}/{run['id']}/reject",
        headers=org.headers,
        json={"inputs_hash": run["inputs_hash"], "reason": "wrong account"},
    )
    assert rejected.status_code == 200
    body = rejected.json()
    assert body["status"] == "CANCELLED"
    assert body["error"] == {"type": "Rejected", "message": "rejected: wrong account"}
    assert body["rejected_by"] == org.user_id
    again = await client.post(
        f"{RUNS}/{run['id']}/approve", headers=org.headers, json={"inputs_hash": run["inputs_hash"]}
    )
    assert again.status_code == 409


async def test_members_cannot_decide_approvals(client: httpx.AsyncClient, org: OrgHandle) -> None:
    member = await key_with_role(client, org, "member")
    run = (await client.post(RUNS, headers=member, json={"kind": "test_write", "inputs": {"value": "x"}})).json()
    refused = await client.post(f"{RUNS}/{run['id']}/approve", headers=member, json={"inputs_hash": run["inputs_hash"]})
    assert refused.status_code == 403


async def test_cancelling_a_run_awaiting_approval_ends_it(client: httpx.AsyncClient, org: OrgHandle) -> None:
    run = await create_write(client, org)
    cancelled = await client.post(f"{RUNS}/{run['id']}/cancel", headers=org.headers)
    assert cancelled.json()["status"] == "CANCELLED"


async def test_admins_change_the_policy_per_kind(client: httpx.AsyncClient, org: OrgHandle) -> None:
    policy = {k["kind"]: k for k in (await client.get("/api/v1/action-policy", headers=org.headers)).json()["kinds"]}
    assert policy["test_write"] == {
        "kind": "test_write",
        "risk": "write",
        "requires_approval": True,
        "source": "default",
    }
    assert policy["echo"]["requires_approval"] is False

    member = await key_with_role(client, org, "member")
    refused = await client.put("/api/v1/action-policy/echo", headers=member, json={"requires_approval": True})
    assert refused.status_code == 403

    gate_echo = await client.put("/api/v1/action-policy/echo", headers=org.headers, json={"requires_approval": True})
    assert gate_echo.status_code == 200
    free_write = await client.put(
        "/api/v1/action-policy/test_write", headers=org.headers, json={"requires_approval": False}
    )
    assert {k["kind"]: k["source"] for k in free_write.json()["kinds"]}["test_write"] == "organization"
    echo = (await client.post(RUNS, headers=org.headers, json={"kind": "echo", "inputs": {}})).json()
    assert echo["status"] == "AWAITING_APPROVAL"
    write = (
        await client.post(f"{RUNS}?wait=10", headers=org.headers, json={"kind": "test_write", "inputs": {"value": "y"}})
    ).json()
    assert write["status"] == "COMPLETED"

    reset = await client.put("/api/v1/action-policy/test_write", headers=org.headers, json={"requires_approval": None})
    assert {k["kind"]: k["source"] for k in reset.json()["kinds"]}["test_write"] == "default"
    unknown = await client.put("/api/v1/action-policy/teleport", headers=org.headers, json={"requires_approval": True})
    assert unknown.status_code == 404
