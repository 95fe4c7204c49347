from __future__ import annotations

from pathlib import Path

import pytest

from virtuousai.config import Settings

CANARY = "canary-5e1d-0a9b-never-shown"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Loopback allowed: the http_api tests start their own server on 127.0.0.1.
    return Settings(database_url=db_url, data_dir=tmp_path / "var", http_allow_loopback=True)


def postgres_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "provider": "postgres",
        "name": "Warehouse",
        "slug": "warehouse",
        "config": {"host": "127.0.0.1", "port": 5432, "database": "test", "username": "postgres"},
        "secrets": {"password": CANARY},
        "is_default": True,
    }
    body.update(overrides)
    return body
