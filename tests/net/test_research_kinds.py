"""``web_search`` against a loopback server speaking Tavily's wire format, and ``fetch_page`` against loopback
pages: what each returns, what it records, and how each failure reaches the caller (and whether it is retried)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net.helpers import RecordedRequest, Reply, ServerFactory
from virtuousai.actions.kinds.common import ToolFailed
from virtuousai.actions.kinds.http import ALLOW_LOOPBACK_OPTION
from virtuousai.actions.kinds.research import (
    MAX_BYTES_OPTION,
    FetchPageInput,
    FetchPageOutput,
    WebSearchInput,
    WebSearchOutput,
)
from virtuousai.actions.registry import default_registry
from virtuousai.errors import NotFound
from virtuousai.net import BlockedDestination, UpstreamTimeout
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store.tenant import TenantContext

SEARCH = default_registry().get("web_search")
FETCH = default_registry().get("fetch_page")
API_KEY = "tvly-test-key"


def tavily_answer(request: RecordedRequest) -> Reply:
    """What Tavily's POST /search answers (docs.tavily.com, "Search"), for the query it was sent."""
    if request.method != "POST" or request.path != "/search":
        return Reply(status=404, body=b'{"detail": "Not Found"}')
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return Reply(status=401, body=b'{"detail": {"error": "Unauthorized: missing or invalid API key."}}')
    asked = json.loads(request.body)
    results = [
        {
            "title": f"Result {n} for {asked['query']}",
            "url": f"https://example.org/{n}",
            "content": f"Snippet {n}.",
            "score": 0.9 - n / 10,
            "raw_content": None,
        }
        for n in range(asked["max_results"])
    ]
    body = {"query": asked["query"], "answer": None, "images": [], "results": results, "response_time": "0.42"}
    return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(body).encode())


def context(connection: ResolvedConnection | None = None, **options: Any) -> ActionContext:
    async def resolve(ref: str) -> ResolvedConnection:
        if connection is None or ref not in ("provider:tavily", "slug:search", connection.id):
            raise NotFound(f"connection {ref!r} not found")
        return connection

    return ActionContext(
        run_id="run_01TESTRESEARCH",
        tenant=TenantContext(tenant_id="org_test"),
        options={ALLOW_LOOPBACK_OPTION: True, **options},
        _resolve=resolve,
    )


def tavily(base_url: str, api_key: str = API_KEY, **config: Any) -> ResolvedConnection:
    return ResolvedConnection(
        id="conn_01TAVILY",
        slug="search",
        provider="tavily",
        config={"base_url": base_url, **config},
        secrets={"api_key": api_key},
    )


async def search(ctx: ActionContext, **inputs: object) -> WebSearchOutput:
    output = await SEARCH.execute(ctx, WebSearchInput.model_validate(inputs))
    assert isinstance(output, WebSearchOutput)
    return output


async def fetch(ctx: ActionContext, url: str) -> FetchPageOutput:
    output = await FETCH.execute(ctx, FetchPageInput(url=url))
    assert isinstance(output, FetchPageOutput)
    return output


# --- web_search ---------------------------------------------------------------------------------------------------


def test_the_research_tools_are_registered_read_kinds() -> None:
    assert (SEARCH.risk, FETCH.risk) == ("read", "read")
    assert set(SEARCH.input_schema()["properties"]) == {"query", "max_results", "connection"}
    assert set(FETCH.input_schema()["properties"]) == {"url"}


async def test_web_search_speaks_tavily_and_records_the_resolved_request(serve: ServerFactory) -> None:
    server = serve(tavily_answer)
    output = await search(context(tavily(server.url(), search_depth="advanced")), query="duckdb parquet", max_results=3)

    (sent,) = server.requests
    assert (sent.method, sent.path, sent.headers["content-type"]) == ("POST", "/search", "application/json")
    body = json.loads(sent.body)
    assert (body["query"], body["max_results"], body["search_depth"]) == ("duckdb parquet", 3, "advanced")
    assert body["include_raw_content"] is False
    assert [(r.title, r.url, r.snippet) for r in output.results] == [
        (f"Result {n} for duckdb parquet", f"https://example.org/{n}", f"Snippet {n}.") for n in range(3)
    ]
    assert output.request.model_dump() == {
        "query": "duckdb parquet",
        "max_results": 3,
        "search_depth": "advanced",
        "host": "127.0.0.1",
        "connection": "conn_01TAVILY",
    }
    assert output.response_time_s == 0.42 and output.untrusted is True
    assert API_KEY not in output.model_dump_json()


async def test_max_results_defaults_to_the_connections(serve: ServerFactory) -> None:
    server = serve(tavily_answer)
    output = await search(context(tavily(server.url(), max_results=2)), query="x")
    assert output.request.max_results == 2 and len(output.results) == 2


@pytest.mark.parametrize(
    ("status", "body", "error_type", "retryable"),
    [
        (401, b'{"detail": {"error": "Unauthorized: missing or invalid API key."}}', "search_unauthorized", False),
        (429, b'{"detail": {"error": "Too many requests"}}', "search_rate_limited", True),
        (
            432,
            b'{"detail": {"error": "This request exceeds your plan\'s set usage limit."}}',
            "search_quota_exceeded",
            False,
        ),
        (400, b'{"detail": {"error": "Invalid topic"}}', "search_rejected", False),
        (500, b"Internal Server Error", "search_unavailable", True),
        (503, b"<html>bad gateway</html>", "search_unavailable", True),
    ],
)
async def test_tavily_errors_are_clear_tool_errors(
    serve: ServerFactory, status: int, body: bytes, error_type: str, retryable: bool
) -> None:
    server = serve(lambda r: Reply(status=status, headers={"Content-Type": "application/json"}, body=body))
    with pytest.raises(ToolFailed) as failed:
        await search(context(tavily(server.url())), query="x")
    assert (failed.value.error_type, failed.value.retryable) == (error_type, retryable)
    assert str(status) in str(failed.value) and "127.0.0.1" in str(failed.value)
    if body.startswith(b"{"):
        assert json.loads(body)["detail"]["error"] in str(failed.value)


async def test_a_wrong_key_is_unauthorized_and_never_echoed(serve: ServerFactory) -> None:
    server = serve(tavily_answer)
    with pytest.raises(ToolFailed, match="check the tavily connection's api_key") as failed:
        await search(context(tavily(server.url(), api_key="tvly-wrong")), query="x")
    assert "tvly-wrong" not in str(failed.value)


@pytest.fixture
def stalled() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


async def test_a_search_that_does_not_answer_in_time_is_a_retryable_timeout(
    serve: ServerFactory, stalled: threading.Event
) -> None:
    server = serve(lambda r: (stalled.wait(10), Reply())[1])
    with pytest.raises(UpstreamTimeout) as failed:
        await search(context(tavily(server.url(), timeout_s=0.3)), query="x")
    assert failed.value.retryable is True


async def test_a_200_that_is_not_tavilys_json_is_a_clear_error(serve: ServerFactory) -> None:
    server = serve(lambda r: Reply(body=b"<html>captive portal</html>"))
    with pytest.raises(ToolFailed) as failed:
        await search(context(tavily(server.url())), query="x")
    assert failed.value.error_type == "search_bad_response"


async def test_web_search_needs_a_tavily_connection(serve: ServerFactory) -> None:
    with pytest.raises(ToolFailed) as missing:
        await search(context(None), query="x")
    assert (missing.value.error_type, missing.value.retryable) == ("connection_not_found", False)
    server = serve()
    with pytest.raises(BlockedDestination):  # a base_url is checked like every outbound URL
        await search(context(tavily(server.url()), **{ALLOW_LOOPBACK_OPTION: False}), query="x")
    assert server.requests == []


# --- fetch_page ---------------------------------------------------------------------------------------------------

ARTICLE = b"""<!doctype html><html><head><title>Parquet, explained</title><script>var x = 1;</script></head>
<body><nav><a href="/">Home</a> <a href="/about#team">About</a></nav>
<article><h1>Parquet, explained</h1>
<p>Parquet is a columnar storage format. It stores each column's values together, so a query that reads two
columns of a wide table reads a small part of the file. Row groups and pages hold statistics that let readers
skip data that cannot match a filter.</p>
<p>Read <a href="https://parquet.apache.org/docs/">the specification</a> or <a href="mailto:x@example.org">mail
us</a>.</p></article></body></html>"""


def html(body: bytes, content_type: str = "text/html; charset=utf-8") -> Any:
    return lambda request: Reply(headers={"Content-Type": content_type}, body=body)


async def test_an_html_page_becomes_readable_text_a_title_and_links(serve: ServerFactory) -> None:
    server = serve(html(ARTICLE))
    output = await fetch(context(), server.url("/docs/parquet"))

    assert (output.status, output.content_type, output.title) == (200, "text/html", "Parquet, explained")
    assert "columnar storage format" in output.text and "var x" not in output.text
    assert [(link.url, link.text) for link in output.links] == [
        (server.url("/"), "Home"),
        (server.url("/about"), "About"),
        ("https://parquet.apache.org/docs/", "the specification"),
    ]
    assert output.url == server.url("/docs/parquet") and output.untrusted is True
    assert (output.truncated, output.bytes_read, output.redirects) == (False, len(ARTICLE), [])
    (sent,) = server.requests
    assert "text/html" in sent.headers["accept"]


async def test_plain_text_and_json_are_read_too(serve: ServerFactory) -> None:
    text = serve(html(b"just words\non two lines", "text/plain"))
    output = await fetch(context(), text.url("/notes.txt"))
    assert (output.content_type, output.text, output.title, output.links) == (
        "text/plain",
        "just words\non two lines",
        None,
        [],
    )
    data = serve(html(b'{"rows":[1,2],"name":"caf\xc3\xa9"}', "application/json"))
    output = await fetch(context(), data.url("/api"))
    assert output.content_type == "application/json"
    assert json.loads(output.text) == {"rows": [1, 2], "name": "café"} and "\n  " in output.text


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
        ("application/octet-stream", b"\x00\x01\x02"),
        ("image/png", b"\x89PNG"),
    ],
)
async def test_a_binary_page_is_a_clear_error(serve: ServerFactory, content_type: str, body: bytes) -> None:
    server = serve(html(body, content_type))
    with pytest.raises(ToolFailed, match="reads HTML, plain text and JSON") as failed:
        await fetch(context(), server.url("/file"))
    assert (failed.value.error_type, failed.value.retryable) == ("unsupported_content_type", False)
    assert content_type in str(failed.value)


async def test_a_huge_page_is_cut_at_the_size_cap_and_says_so(serve: ServerFactory) -> None:
    paragraph = b"<p>" + b"All work and no play makes a long page. " * 50 + b"</p>"
    server = serve(html(b"<html><head><title>Big</title></head><body>" + paragraph * 200 + b"</body></html>"))
    output = await fetch(context(**{MAX_BYTES_OPTION: 4096}), server.url("/big"))
    assert output.truncated is True and output.bytes_read == 4096
    assert output.text.endswith("[cut: the page is larger than 4096 bytes; only its start was read]")
    assert output.title == "Big" and "All work and no play" in output.text


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/admin"])
async def test_a_redirect_to_a_forbidden_address_is_refused(serve: ServerFactory, target: str) -> None:
    server = serve(lambda r: Reply(status=302, headers={"Location": target}, body=b""))
    with pytest.raises(BlockedDestination):
        await fetch(context(), server.url("/moved"))
    assert len(server.requests) == 1  # the first hop only


async def test_a_loopback_page_is_refused_without_the_option(serve: ServerFactory) -> None:
    server = serve(html(ARTICLE))
    with pytest.raises(BlockedDestination):
        await fetch(context(**{ALLOW_LOOPBACK_OPTION: False}), server.url())
    assert server.requests == []


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (403, False), (503, True), (429, True)])
async def test_an_error_status_is_a_tool_error(serve: ServerFactory, status: int, retryable: bool) -> None:
    server = serve(lambda r: Reply(status=status, headers={"Content-Type": "text/html"}, body=b"<p>nope</p>"))
    with pytest.raises(ToolFailed, match=f"answered {status}") as failed:
        await fetch(context(), server.url("/missing"))
    assert (failed.value.error_type, failed.value.retryable) == ("page_http_error", retryable)
