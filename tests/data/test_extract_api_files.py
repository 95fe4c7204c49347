"""``dlt_extract`` from a paginated REST API (a server on 127.0.0.1) and from csv/jsonl files."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.data.conftest import make_context
from virtuousai.data.engine import LakeQueryEngine, QueryLimits
from virtuousai.data.kinds import DltExtractInput, DltExtractOutput, dlt_extract
from virtuousai.errors import ValidationFailed
from virtuousai.runtime.context import ActionContext, ResolvedConnection

PAGE_SIZE = 10


@dataclass
class OrdersApi:
    """A paginated JSON API: GET /orders?page=N[&since=T] → {"data": [...], "next": url | null}."""

    token: str
    orders: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
def orders_api() -> Iterator[OrdersApi]:
    api = OrdersApi(token=f"canary-{secrets.token_hex(8)}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            api.requests.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self.send_response(401)
                self.end_headers()
                return
            since = int(query.get("since", ["0"])[0])
            page = int(query.get("page", ["1"])[0])
            matching = [o for o in api.orders if o["updated_at"] > since]
            chunk = matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            more = page * PAGE_SIZE < len(matching)
            next_url = f"{api.base_url}/orders?page={page + 1}&since={since}" if more else None
            body = json.dumps({"data": chunk, "next": next_url}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


def _add_orders(api: OrdersApi, ids: range) -> None:
    api.orders.extend({"id": i, "status": "paid", "total": i * 3, "updated_at": i} for i in ids)


async def _extract(ctx: ActionContext, **inputs: Any) -> DltExtractOutput:
    output = await dlt_extract.execute(ctx, DltExtractInput.model_validate(inputs))
    assert isinstance(output, DltExtractOutput)
    return output


def _rows(ctx: ActionContext, sql: str) -> list[list[Any]]:
    engine = LakeQueryEngine(ctx.data_dir / "lake", QueryLimits(threads=1))
    try:
        return engine.query(ctx.tenant_id, sql).rows
    finally:
        engine.close()


async def test_rest_api_pages_through_and_reruns_incrementally(tmp_path: Path, orders_api: OrdersApi) -> None:
    _add_orders(orders_api, range(1, 26))
    connection = ResolvedConnection(
        id="conn_api",
        slug="shop-api",
        provider="rest_api",
        config={"base_url": orders_api.base_url, "auth_type": "bearer"},
        secrets={"token": orders_api.token},
    )
    ctx = make_context(tmp_path / "var", connection, options={"http_allow_loopback": True})
    source = {
        "type": "rest_api",
        "paginator": {"type": "json_link", "next_url_path": "next"},
        "resources": [{"name": "orders", "data_selector": "data", "primary_key": "id"}],
        "incremental": {"orders": {"cursor_path": "updated_at", "start_param": "since", "initial_value": 0}},
    }

    first = await _extract(ctx, connection="slug:shop-api", dataset="api", source=source)
    assert first.rows == {"orders": 25}
    assert len([r for r in orders_api.requests if r.startswith("/orders")]) == 3  # three pages

    _add_orders(orders_api, range(26, 31))
    second = await _extract(ctx, connection="slug:shop-api", dataset="api", source=source)
    assert second.rows == {"orders": 5}
    assert "since=25" in orders_api.requests[-1]
    assert _rows(ctx, "SELECT count(*), max(id) FROM bronze.api.orders") == [[30, 30]]

    for path in ctx.data_dir.rglob("*"):
        if path.is_file():
            assert orders_api.token.encode() not in path.read_bytes(), path


async def test_rest_api_refuses_loopback_unless_allowed(tmp_path: Path, orders_api: OrdersApi) -> None:
    connection = ResolvedConnection(
        id="conn_api", slug=None, provider="rest_api", config={"base_url": orders_api.base_url}, secrets={}
    )
    ctx = make_context(tmp_path / "var", connection)
    source = {"type": "rest_api", "resources": [{"name": "orders"}]}
    with pytest.raises(Exception, match="loopback"):
        await _extract(ctx, connection="c", dataset="api", source=source)
    assert orders_api.requests == []


async def test_filesystem_csv_and_jsonl(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "var")
    exports = ctx.data_dir / "files" / ctx.tenant_id / "exports"
    exports.mkdir(parents=True)
    (exports / "orders-1.csv").write_text("id,status,total\n1,paid,10.5\n2,refunded,3\n")
    (exports / "orders-2.csv").write_text("id,status,total\n3,paid,7\n")
    (exports / "events.jsonl").write_text('{"id": 1, "kind": "click"}\n{"id": 2, "kind": "view", "extra": true}\n')

    csv_out = await _extract(
        ctx,
        dataset="files",
        source={"type": "filesystem", "path_glob": f"{exports}/orders-*.csv", "format": "csv", "table": "orders"},
    )
    assert csv_out.rows == {"orders": 3}
    assert _rows(ctx, "SELECT sum(total) FROM bronze.files.orders") == [[20.5]]

    jsonl_out = await _extract(
        ctx,
        dataset="files",
        source={"type": "filesystem", "path_glob": f"{exports}/*.jsonl", "format": "jsonl", "table": "events"},
    )
    assert jsonl_out.rows == {"events": 2}
    assert _rows(ctx, "SELECT kind, extra FROM bronze.files.events ORDER BY id") == [["click", None], ["view", True]]


@pytest.mark.parametrize(
    ("path_glob", "named"),
    [
        ("/etc/*.conf", "/etc"),
        ("relative/*.csv", "absolute"),
        ("{files}/../../*.csv", ".."),
        ("{files}/none-*.csv", "no file"),
    ],
)
async def test_filesystem_source_stays_inside_allowed_folders(tmp_path: Path, path_glob: str, named: str) -> None:
    ctx = make_context(tmp_path / "var")
    files = ctx.data_dir / "files" / ctx.tenant_id
    files.mkdir(parents=True)
    source = {"type": "filesystem", "path_glob": path_glob.format(files=files), "format": "csv", "table": "x"}
    with pytest.raises(ValidationFailed, match=named):
        await _extract(ctx, dataset="files", source=source)
