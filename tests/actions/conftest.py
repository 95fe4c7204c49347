"""Action API fixtures: the app runs one in-process worker with fast runtime settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import OrgHandle
from tests.runtime.conftest import FAST
from virtuousai.app import create_app
from virtuousai.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", **FAST)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, workers=1)
    async with app.router.lifespan_context(app):
        yield app


async def key_with_role(client: httpx.AsyncClient, org: OrgHandle, role: str) -> dict[str, str]:
    created = await client.post("/api/v1/api-keys", headers=org.headers, json={"name": role, "role": role})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}
