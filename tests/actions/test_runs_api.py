"""POST/GET /action-runs: creation, validation, idempotency, ?wait=, listing, cancel, roles and tenancy."""

from __future__ import annotations

import httpx
import pytest

from tests.actions.conftest import key_with_role
from tests.conftest import OrgHandle

RUNS = "/api/v1/action-runs"


async def test_create_then_wait_returns_the_completed_run(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.post(f"{RUNS}?wait=10", headers=org.headers, json={"kind": "echo", "inputs": {"a": 1}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "COMPLETED"
    assert run["output"] == {"a": 1}
    assert run["origin"] == "api"
    assert run["attempt"] == 1
    assert run["started_at"] and run["finished_at"]
    fetched = await client.get(f"{RUNS}/{run['id']}", headers=org.headers)
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "COMPLETED"


async def test_without_wait_the_run_is_returned_pending(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.post(RUNS, headers=org.headers, json={"kind": "sleep", "inputs": {"seconds": 0}})
    assert response.status_code == 201
    assert response.json()["status"] in ("PENDING", "RUNNING", "COMPLETED")
    assert response.json()["timeout_s"] == 86_400  # the kind's default
    assert response.json()["max_attempts"] == 3  # the kind's retry policy


async def test_wait_answers_after_the_timeout_when_the_run_is_still_running(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    body = {"kind": "sleep", "inputs": {"seconds": 30}}
    response = await client.post(f"{RUNS}?wait=0.3", headers=org.headers, json=body)
    assert response.status_code == 201
    assert response.json()["status"] in ("PENDING", "RUNNING")
    await client.post(f"{RUNS}/{response.json()['id']}/cancel", headers=org.headers)


async def test_same_idempotency_key_and_inputs_return_the_same_run(client: httpx.AsyncClient, org: OrgHandle) -> None:
    body = {"kind": "echo", "inputs": {"b": 2, "a": 1}, "idempotency_key": "order-42"}
    first = await client.post(RUNS, headers=org.headers, json=body)
    assert first.status_code == 201
    same_inputs_reordered = {**body, "inputs": {"a": 1, "b": 2}}
    again = await client.post(RUNS, headers=org.headers, json=same_inputs_reordered)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = await client.post(RUNS, headers=org.headers, json={**body, "inputs": {"a": 2}})
    assert other.status_code == 409
    assert other.json()["run_id"] == first.json()["id"]


async def test_idempotency_keys_are_per_organization(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    body = {"kind": "echo", "inputs": {}, "idempotency_key": "shared"}
    mine = await client.post(RUNS, headers=org.headers, json=body)
    theirs = await client.post(RUNS, headers=other_org.headers, json={**body, "inputs": {"x": 1}})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


async def test_invalid_inputs_answer_422_with_field_paths(client: httpx.AsyncClient, org: OrgHandle) -> None:
    response = await client.post(RUNS, headers=org.headers, json={"kind": "sleep", "inputs": {"seconds": -1}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "inputs", "seconds"]
    unknown_field = await client.post(RUNS, headers=org.headers, json={"kind": "sleep", "inputs": {"minutes": 1}})
    locs = [e["loc"] for e in unknown_field.json()["errors"]]
    assert ["body", "inputs", "seconds"] in locs and ["body", "inputs", "minutes"] in locs
    unknown_kind = await client.post(RUNS, headers=org.headers, json={"kind": "teleport", "inputs": {}})
    assert unknown_kind.status_code == 422
    assert unknown_kind.json()["errors"][0]["loc"] == ["body", "kind"]
    listed = await client.get(RUNS, headers=org.headers)
    assert listed.json()["items"] == [], "bad input changes nothing"


async def test_an_unknown_connection_is_a_422_at_creation_and_nothing_is_stored(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    """Found when the run is made, naming the field: not accepted, retried three times, then FAILED."""
    inputs = {"connection": "slug:nope", "dataset": "shop", "source": {"type": "sql_database", "tables": ["orders"]}}
    response = await client.post(RUNS, headers=org.headers, json={"kind": "dlt_extract", "inputs": inputs})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"loc": ["body", "inputs", "connection"], "msg": "unknown connection 'slug:nope'", "type": "unknown_connection"}
    ]
    # A kind's default connection is checked the same way (web_search's is the organization's tavily one).
    default = await client.post(RUNS, headers=org.headers, json={"kind": "web_search", "inputs": {"query": "x"}})
    assert default.status_code == 422 and default.json()["errors"][0]["loc"] == ["body", "inputs", "connection"]
    assert (await client.get(RUNS, headers=org.headers)).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata address
        "http://10.0.0.7/admin",  # a private address
        "http://[::ffff:10.0.0.7]/",  # the same, IPv4-mapped
        "http://0x0a000007/",  # the same, as getaddrinfo reads a hex host
        "http://metadata.google.internal/computeMetadata/v1/",  # a metadata host name
        "http://0.0.0.0:8080/",
    ],
)
async def test_a_request_that_can_never_be_sent_is_refused_before_anyone_is_asked(
    client: httpx.AsyncClient, org: OrgHandle, url: str
) -> None:
    """A write kind waits for an approval: what the address policy refuses without DNS is a 422 at creation, so no
    one approves a call that could never be made. (Names that resolve to such addresses are refused when sent.)"""
    body = {"kind": "http_request", "inputs": {"method": "GET", "url": url}}
    response = await client.post(RUNS, headers=org.headers, json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "inputs", "url"] and "public addresses only" in error["msg"], error
    page = await client.post(RUNS, headers=org.headers, json={"kind": "fetch_page", "inputs": {"url": url}})
    assert page.status_code == 422 and page.json()["errors"][0]["loc"] == ["body", "inputs", "url"]
    assert (await client.get(RUNS, headers=org.headers)).json()["items"] == []


async def test_failed_run_shows_its_error(client: httpx.AsyncClient, org: OrgHandle) -> None:
    body = {"kind": "fail", "inputs": {"error_type": "Boom", "message": "no"}}
    run = (await client.post(f"{RUNS}?wait=10", headers=org.headers, json=body)).json()
    assert run["status"] == "FAILED"
    assert run["error"] == {"type": "Boom", "message": "no"}


async def test_list_filters_and_paginates(client: httpx.AsyncClient, org: OrgHandle) -> None:
    ids = []
    for n in range(3):
        ids.append(
            (
                await client.post(f"{RUNS}?wait=10", headers=org.headers, json={"kind": "echo", "inputs": {"n": n}})
            ).json()["id"]
        )
    failed = (await client.post(f"{RUNS}?wait=10", headers=org.headers, json={"kind": "fail", "inputs": {}})).json()
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "kind": "echo"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(RUNS, headers=org.headers, params=params)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    by_status = (await client.get(RUNS, headers=org.headers, params={"status": "FAILED"})).json()["items"]
    assert [r["id"] for r in by_status] == [failed["id"]]
    by_origin = (await client.get(RUNS, headers=org.headers, params={"origin": "automation"})).json()["items"]
    assert by_origin == []
    second = (await client.get(f"{RUNS}/{ids[1]}", headers=org.headers)).json()
    window = {"created_after": second["created_at"], "created_before": failed["created_at"]}
    in_window = (await client.get(RUNS, headers=org.headers, params=window)).json()["items"]
    assert [r["id"] for r in in_window] == [ids[2], ids[1]]
    naive = await client.get(RUNS, headers=org.headers, params={"created_after": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["loc"] == ["query", "created_after"]


async def test_cancel_a_running_run_and_refuse_to_cancel_a_finished_one(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    run = (await client.post(RUNS, headers=org.headers, json={"kind": "sleep", "inputs": {"seconds": 30}})).json()
    cancelled = await client.post(f"{RUNS}/{run['id']}/cancel", headers=org.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] in ("CANCELLED", "RUNNING")
    done = (await client.get(f"{RUNS}/{run['id']}?", headers=org.headers)).json()
    finished = await client.post(f"{RUNS}?wait=10", headers=org.headers, json={"kind": "echo", "inputs": {}})
    refused = await client.post(f"{RUNS}/{finished.json()['id']}/cancel", headers=org.headers)
    assert refused.status_code == 409
    assert refused.json()["run_status"] == "COMPLETED"
    assert done["cancel_requested_at"] is not None


async def test_viewers_read_but_do_not_create_and_other_orgs_see_404(
    client: httpx.AsyncClient, org: OrgHandle, other_org: OrgHandle
) -> None:
    viewer = await key_with_role(client, org, "viewer")
    refused = await client.post(RUNS, headers=viewer, json={"kind": "echo", "inputs": {}})
    assert refused.status_code == 403
    run = (await client.post(RUNS, headers=org.headers, json={"kind": "echo", "inputs": {}})).json()
    assert (await client.get(f"{RUNS}/{run['id']}", headers=viewer)).status_code == 200
    assert (await client.get(f"{RUNS}/{run['id']}", headers=other_org.headers)).status_code == 404
    assert (await client.post(f"{RUNS}/{run['id']}/cancel", headers=other_org.headers)).status_code == 404
    assert (await client.get(f"{RUNS}/{run['id']}/events", headers=other_org.headers)).status_code == 404


async def test_actions_catalog_lists_kinds_with_schemas_risk_and_defaults(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    kinds = {k["slug"]: k for k in (await client.get("/api/v1/actions", headers=org.headers)).json()}
    sleep = kinds["sleep"]
    assert sleep["risk"] == "read"
    assert sleep["input_schema"]["properties"]["seconds"]["type"] == "number"
    assert sleep["output_schema"]["required"] == ["slept_s"]
    assert sleep["default_timeout_s"] == 86_400
    assert kinds["fail"]["retry"]["max_attempts"] == 1
    assert kinds["test_write"]["risk"] == "write"
