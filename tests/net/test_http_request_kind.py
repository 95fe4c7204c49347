"""The ``http_request`` action kind, executed with a real ``ActionContext`` against loopback servers."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pydantic import ValidationError

from tests.helpers import eventually
from tests.net.helpers import RecordedRequest, Reply, ServerFactory
from virtuousai.actions.kinds.http import ALLOW_LOOPBACK_OPTION, HttpRequestInput, HttpRequestOutput
from virtuousai.actions.registry import default_registry
from virtuousai.net import BlockedDestination
from virtuousai.runtime.context import ActionContext, Cancelled
from virtuousai.store.tenant import TenantContext

KIND = default_registry().get("http_request")


def context(*, allow_loopback: bool) -> ActionContext:
    return ActionContext(
        run_id="run_01TESTHTTPREQUEST",
        tenant=TenantContext(tenant_id="org_test"),
        options={ALLOW_LOOPBACK_OPTION: allow_loopback},
    )


async def execute(ctx: ActionContext, **inputs: object) -> HttpRequestOutput:
    output = await KIND.execute(ctx, HttpRequestInput.model_validate(inputs))
    assert isinstance(output, HttpRequestOutput)
    return output


def test_http_request_is_a_registered_write_kind() -> None:
    assert KIND.risk == "write"
    assert {"method", "url", "headers", "body", "timeout_s", "follow_redirects"} <= set(
        KIND.input_schema()["properties"]
    )
    assert {"method", "url", "connection", "path", "headers", "body", "timeout_s", "follow_redirects"} <= set(
        KIND.input_schema()["properties"]
    )
    assert {"status", "headers", "body", "truncated", "url", "elapsed_ms", "request"} == set(
        KIND.output_schema()["properties"]
    )


async def test_sends_method_headers_json_body_and_the_idempotency_key(serve: ServerFactory) -> None:
    def respond(request: RecordedRequest) -> Reply:
        return Reply(status=201, headers={"Content-Type": "application/json", "X-Id": "42"}, body=b'{"ok":true}')

    server = serve(respond)
    output = await execute(
        context(allow_loopback=True),
        method="POST",
        url=server.url("/items?debug=1"),
        headers={"X-Api-Version": "2"},
        body={"name": "café", "tags": ["a", "b"]},
    )

    (received,) = server.requests
    assert (received.method, received.path) == ("POST", "/items?debug=1")
    assert received.headers["x-api-version"] == "2"
    assert "authorization" not in received.headers
    assert received.headers["content-type"] == "application/json"
    assert received.headers["idempotency-key"] == "run_01TESTHTTPREQUEST"
    assert json.loads(received.body) == {"name": "café", "tags": ["a", "b"]}

    assert output.status == 201
    assert output.headers["x-id"] == "42"
    assert json.loads(output.body) == {"ok": True}
    assert output.truncated is False
    assert output.url == server.url("/items?debug=1")
    assert output.elapsed_ms > 0
    # What was sent, as a replay repeats it: the names of the headers, never their values.
    assert (output.request.method, output.request.url, output.request.connection) == (
        "POST",
        server.url("/items?debug=1"),
        None,
    )
    assert {"x-api-version", "idempotency-key", "content-type"} <= set(output.request.header_names)


async def test_a_text_body_and_an_explicit_idempotency_key_are_sent_as_given(serve: ServerFactory) -> None:
    server = serve()
    await execute(
        context(allow_loopback=True),
        method="PUT",
        url=server.url(),
        headers={"idempotency-key": "mine"},
        body="plain words",
    )
    (received,) = server.requests
    assert received.body == b"plain words"
    assert received.headers["content-type"] == "text/plain; charset=utf-8"
    assert received.headers["idempotency-key"] == "mine"


async def test_the_response_body_is_capped(serve: ServerFactory) -> None:
    server = serve(lambda r: Reply(body=b"y" * 5000))
    output = await execute(context(allow_loopback=True), url=server.url(), max_body_bytes=100)
    assert output.body == "y" * 100 and output.truncated is True


async def test_loopback_is_refused_unless_the_option_allows_it(serve: ServerFactory) -> None:
    server = serve()
    with pytest.raises(BlockedDestination):
        await execute(context(allow_loopback=False), url=server.url())
    with pytest.raises(BlockedDestination):
        await execute(ActionContext(run_id="run_x", tenant=TenantContext(tenant_id="org_test")), url=server.url())
    assert server.requests == []


async def test_cancelling_the_run_abandons_the_request(serve: ServerFactory) -> None:
    release = threading.Event()
    server = serve(lambda r: (release.wait(10), Reply())[1])
    ctx = context(allow_loopback=True)
    try:
        running = KIND.execute(ctx, HttpRequestInput(url=server.url(), timeout_s=60))
        task = asyncio.ensure_future(running)
        await eventually(lambda: len(server.requests) == 1, timeout=5, what="the request to reach the server")
        ctx.cancel.cancel("user asked")
        with pytest.raises(Cancelled, match="user asked"):
            await asyncio.wait_for(task, timeout=5)
    finally:
        release.set()


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "gopher://example.com/"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"url": "not a url at all"}, "url"),
        ({"url": "http://example.com/", "headers": {"Host": "internal"}}, "headers"),
        ({"url": "http://example.com/", "headers": {"X-Evil": "a\r\nInjected: 1"}}, "headers"),
        ({"url": "http://example.com/", "method": "TRACE"}, "method"),
        ({"url": "http://example.com/", "timeout_s": 0}, "timeout_s"),
        # No credential in the inputs: a connection carries it (docs/http.md, "Credentials").
        ({"url": "http://example.com/", "headers": {"Authorization": "Bearer t"}}, "headers"),
        ({"url": "http://example.com/", "headers": {"Cookie": "sid=1"}}, "headers"),
        ({"url": "http://example.com/", "headers": {"Proxy-Authorization": "Basic eA=="}}, "headers"),
        ({"url": "http://example.com/", "headers": {"X-Api-Key": "k"}}, "headers"),
        ({"url": "http://example.com/", "headers": {"X-Auth-Token": "k"}}, "headers"),
        ({"url": "http://example.com/?api_key=k"}, "url"),
        ({"url": "http://example.com/?access_token=k"}, "url"),
    ],
)
def test_invalid_inputs_are_refused_with_the_field_path(inputs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        HttpRequestInput.model_validate(inputs)
    assert invalid.value.errors()[0]["loc"][0] == field
