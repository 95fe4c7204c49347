"""Settings, read once from the environment (prefix ``VAI_``).

Every default runs with nothing installed beyond the package: a SQLite file and the lake under ``./var``,
and a generated local master key. The README's configuration table lists every field here.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAI_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Root of the SQLite file, lake and key file.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: sqlite+aiosqlite:///<data_dir>/vai.db. "
        "postgresql://… URLs are accepted and use asyncpg.",
    )
    master_key_file: Path | None = Field(default=None, description="Default: <data_dir>/master.key.")
    master_key: str | None = Field(default=None, description="Base64 key-encryption key (overrides the file).")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"
    # Workers: None means "1 on SQLite, 0 on PostgreSQL" (resolved in `vai serve`).
    workers: int | None = Field(default=None, ge=0)
    create_demo_org: bool = Field(default=False, description="Create the demo organization on first start.")

    @cached_property
    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'vai.db'}")

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Map plain driver names to the async drivers we ship (``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite)."""
    for plain, async_ in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return async_ + url[len(plain) :]
    return url


def get_settings() -> Settings:
    return Settings()
