"""``http_request`` through an ``http_api`` connection: the host and the credentials are the connection's, the
caller chooses only the path, and a credential goes to the connection's origin only — never across a redirect."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from tests.net.helpers import RecordedRequest, Reply, ServerFactory
from virtuousai.actions.kinds.common import ToolFailed
from virtuousai.actions.kinds.http import ALLOW_LOOPBACK_OPTION, HttpRequestInput, HttpRequestOutput
from virtuousai.actions.registry import default_registry
from virtuousai.errors import NotFound
from virtuousai.net import BlockedDestination
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store.tenant import TenantContext

KIND = default_registry().get("http_request")
TOKEN = "tok-s3cret-value"


def api_connection(base_url: str, *, provider: str = "http_api", **config: Any) -> ResolvedConnection:
    auth = config.pop("auth_type", "bearer")
    secrets = config.pop("secrets", {"token": TOKEN})
    return ResolvedConnection(
        id="conn_01API",
        slug="api",
        provider=provider,
        config={"base_url": base_url, "auth_type": auth, **config},
        secrets=secrets,
    )


def context(connection: ResolvedConnection | None, *, allow_loopback: bool = True) -> ActionContext:
    """The runtime's context, with the connection resolver seam answering ``slug:api`` with ``connection``."""

    async def resolve(ref: str) -> ResolvedConnection:
        if connection is None or ref not in ("slug:api", connection.id):
            raise NotFound(f"connection {ref!r} not found")
        return connection

    return ActionContext(
        run_id="run_01TESTCONNECTION",
        tenant=TenantContext(tenant_id="org_test"),
        options={ALLOW_LOOPBACK_OPTION: allow_loopback},
        _resolve=resolve,
    )


async def execute(ctx: ActionContext, **inputs: object) -> HttpRequestOutput:
    output = await KIND.execute(ctx, HttpRequestInput.model_validate(inputs))
    assert isinstance(output, HttpRequestOutput)
    return output


def redirect_to(url: str) -> Any:
    return lambda request: Reply(status=302, headers={"Location": url}, body=b"")


async def test_the_connection_gives_the_host_the_base_path_and_a_bearer_token(serve: ServerFactory) -> None:
    server = serve(lambda r: Reply(headers={"Content-Type": "application/json"}, body=b'{"items":[]}'))
    ctx = context(api_connection(server.url("/api/v2/"), headers={"X-Api-Version": "2"}))
    output = await execute(ctx, connection="slug:api", path="/items?limit=10", headers={"X-Trace": "t1"})

    (received,) = server.requests
    assert (received.method, received.path) == ("GET", "/api/v2/items?limit=10")
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert (received.headers["x-api-version"], received.headers["x-trace"]) == ("2", "t1")
    assert received.headers["idempotency-key"] == "run_01TESTCONNECTION"
    assert output.status == 200 and output.body == '{"items":[]}'
    assert output.request.connection == "conn_01API"
    assert output.request.url == server.url("/api/v2/items?limit=10")
    assert {"authorization", "x-api-version", "x-trace", "idempotency-key"} <= set(output.request.header_names)
    assert TOKEN not in output.model_dump_json()  # the names of the headers sent, never a credential


@pytest.mark.parametrize(
    ("auth", "secrets", "config", "header", "value"),
    [
        ("bearer", {"token": TOKEN}, {}, "authorization", f"Bearer {TOKEN}"),
        ("header", {"token": TOKEN}, {"header_name": "X-Api-Key"}, "x-api-key", TOKEN),
        (
            "basic",
            {"username": "ann", "password": TOKEN},
            {},
            "authorization",
            "Basic " + base64.b64encode(f"ann:{TOKEN}".encode()).decode(),
        ),
    ],
)
async def test_credentials_go_to_the_connections_host_and_are_dropped_on_a_redirect_elsewhere(
    serve: ServerFactory, auth: str, secrets: dict[str, str], config: dict[str, str], header: str, value: str
) -> None:
    elsewhere = serve()
    api = serve(redirect_to(elsewhere.url("/landing")))
    ctx = context(api_connection(api.url(), auth_type=auth, secrets=secrets, **config))
    output = await execute(ctx, connection="slug:api", path="/export")

    (at_api,) = api.requests
    assert at_api.headers[header] == value
    (at_elsewhere,) = elsewhere.requests  # another origin (another port): the credential stayed behind
    assert header not in at_elsewhere.headers and "authorization" not in at_elsewhere.headers
    assert all(TOKEN not in v for v in at_elsewhere.headers.values())
    assert output.url == elsewhere.url("/landing") and output.request.redirects == [api.url("/export")]


async def test_a_query_credential_is_sent_to_the_connection_and_redacted_in_the_output(serve: ServerFactory) -> None:
    elsewhere = serve()
    api = serve(redirect_to(elsewhere.url("/next")))
    ctx = context(api_connection(api.url(), auth_type="query", query_param="key"))
    output = await execute(ctx, connection="slug:api", path="/search?q=shoes")

    (at_api,) = api.requests
    assert at_api.path == f"/search?q=shoes&key={TOKEN}"
    (at_elsewhere,) = elsewhere.requests
    assert TOKEN not in at_elsewhere.path
    assert TOKEN not in output.model_dump_json()
    assert output.request.url == api.url("/search?q=shoes&key=[redacted]")


async def test_a_server_that_echoes_the_credential_does_not_put_it_in_the_output(serve: ServerFactory) -> None:
    def echo(request: RecordedRequest) -> Reply:
        auth = request.headers.get("authorization", "")
        return Reply(headers={"X-Seen": auth}, body=f"you sent {auth}".encode())

    server = serve(echo)
    output = await execute(context(api_connection(server.url())), connection="slug:api", path="/")
    assert output.body == "you sent Bearer [redacted]" and output.headers["x-seen"] == "Bearer [redacted]"


@pytest.mark.parametrize(
    "path",
    ["//evil.example/x", "/../admin", "/v2/%2e%2e/admin", "/a/./b", "http://evil.example/", "x", "/a\\b", "/a b"],
)
def test_a_path_that_would_leave_the_base_url_is_refused(path: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        HttpRequestInput.model_validate({"connection": "slug:api", "path": path})
    assert invalid.value.errors()[0]["loc"] == ("path",)


@pytest.mark.parametrize(
    "inputs",
    [
        {"connection": "slug:api", "url": "https://api.example.com/x"},  # the host is the connection's
        {"path": "/x"},  # a path needs a connection
        {},
        {"connection": "slug:api", "path": "/x", "headers": {"Authorization": "Bearer mine"}},
        {"connection": "slug:api", "path": "/x?api_key=mine"},
    ],
)
def test_the_caller_never_chooses_the_host_or_a_credential(inputs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HttpRequestInput.model_validate(inputs)


async def test_only_an_existing_http_api_connection_is_used(serve: ServerFactory) -> None:
    server = serve()
    with pytest.raises(ToolFailed) as missing:
        await execute(context(None), connection="slug:nope", path="/")
    assert (missing.value.error_type, missing.value.retryable) == ("connection_not_found", False)
    tavily = api_connection(server.url(), provider="tavily")
    with pytest.raises(ToolFailed) as wrong:
        await execute(context(tavily), connection="slug:api", path="/")
    assert (wrong.value.error_type, wrong.value.retryable) == ("wrong_provider", False)
    assert server.requests == []


async def test_a_connection_to_a_forbidden_address_is_refused_like_any_url(serve: ServerFactory) -> None:
    server = serve()
    with pytest.raises(BlockedDestination):
        await execute(context(api_connection(server.url()), allow_loopback=False), connection="slug:api", path="/")
    with pytest.raises(BlockedDestination, match="metadata"):
        await execute(context(api_connection("http://169.254.169.254/")), connection="slug:api", path="/latest")
    assert server.requests == []
