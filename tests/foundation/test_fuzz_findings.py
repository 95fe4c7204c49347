"""What an independent schemathesis run (issue 18) found, each pinned: timestamps that leave the representable
range are a 422, never a 500; the document says what the server accepts for cursors and ``Last-Event-ID``; a 405
names every method of the resource in ``Allow``."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.foundation.helpers import api_endpoints, list_endpoints
from virtuousai.ids import new_id


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T13:50:52.66+15:38",  # before year 1 in UTC: the 500 the fuzzer found
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "0.5",  # a number, which Pydantic would read as seconds since 1970; the document says date-time
        "2030-01-01",  # a date without a time
    ],
)
async def test_a_timestamp_the_document_does_not_allow_is_a_422(
    client: httpx.AsyncClient, org: OrgHandle, value: str
) -> None:
    for name in ("created_after", "created_before"):
        response = await client.get("/api/v1/action-runs", headers=org.headers, params={name: value})
        assert response.status_code == 422, (name, value, response.text)
        assert response.json()["errors"][0]["loc"] == ["query", name]
    key = await client.post("/api/v1/api-keys", headers=org.headers, json={"name": "x", "expires_at": value})
    assert key.status_code == 422, key.text


async def test_cursors_are_what_the_document_says(app: FastAPI, client: httpx.AsyncClient, org: OrgHandle) -> None:
    document = (await client.get("/openapi.json")).json()
    lists = list_endpoints(app)
    assert lists
    for endpoint in lists:
        template = endpoint.path
        parameters = document["paths"][template]["get"]["parameters"]
        (cursor,) = [p for p in parameters if p["name"] == "cursor"]
        assert cursor["schema"]["type"] == "string" and "anyOf" not in cursor["schema"], cursor  # never "null"
        pattern = re.compile(cursor["schema"]["pattern"])
        assert not pattern.match(""), "an empty cursor= is refused, so the document must not allow it"
        any_id = new_id("zzz")  # any string of an id's shape is a position: the page after it
        assert pattern.match(any_id)
        path = template.replace("{", "").replace("}", "")  # unknown parents answer 404, which is fine here
        response = await client.get(path, headers=org.headers, params={"cursor": any_id})
        assert response.status_code in (200, 404), (template, response.text)
        empty = await client.get(path, headers=org.headers, params={"cursor": ""})
        assert empty.status_code in (404, 422), (template, empty.text)


async def test_last_event_id_is_documented_as_a_sequence_number(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    streams = [p for p in document["paths"] if p.endswith("/events")]
    assert len(streams) >= 2
    for path in streams:
        (header,) = [p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "header"]
        assert (header["schema"]["type"], header["schema"]["pattern"]) == ("string", "^[0-9]{1,18}$"), header


async def test_a_405_names_every_method_of_the_resource(app: FastAPI, client: httpx.AsyncClient) -> None:
    methods: dict[str, set[str]] = {}
    for endpoint in api_endpoints(app):
        methods.setdefault(endpoint.path, set()).add(endpoint.method)
    checked = 0
    for template, allowed in methods.items():
        if "{" in template:
            continue
        response = await client.request("OPTIONS", template)
        assert response.status_code == 405, template
        assert set(response.headers["allow"].split(", ")) == allowed, (template, response.headers["allow"])
        checked += 1
    connections = await client.request("OPTIONS", "/api/v1/connections")
    assert connections.headers["allow"] == "GET, POST"
    schema = await client.request("PUT", "/api/v1/automations/schema")
    assert schema.status_code in (401, 404, 405)  # PUT /automations/{ref} exists; its ref "schema" is not one
    assert checked > 10
