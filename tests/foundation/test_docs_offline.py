"""/docs (Swagger UI) and /redoc work without internet: every script, style and icon they load comes from this
server, and the server serves each one."""

from __future__ import annotations

import re

import httpx
import pytest

REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*'([^']+)'""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_same_origin_assets(client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "http://" not in html.text and "https://" not in html.text, "the page names another origin"
    references = [a or b for a, b in REFERENCE.findall(html.text)]
    scripts = [ref for ref in references if ref.endswith(".js")]
    assert scripts, html.text
    for ref in references:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
        suffix = ref[ref.rfind(".") :]
        assert CONTENT_TYPES[suffix] in asset.headers["content-type"], (ref, asset.headers["content-type"])
    for script in scripts:
        assert len((await client.get(script)).content) > 100_000, f"{script} is not the real bundle"
