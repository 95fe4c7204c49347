"""API shapes for connections. ``ConnectionPublic`` has no secret field at all: only the names of the set ones."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.timeutil import Timestamp

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(max_length=40, description="A provider slug from GET /connections/providers.")
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN, description="Reference it as `slug:<slug>`.")
    description: str = Field(default="", max_length=2000)
    config: dict[str, Any] = Field(default_factory=dict, description="The provider's config (not secret).")
    secrets: dict[str, Any] = Field(
        default_factory=dict, description="The provider's secrets. Write-only: never returned."
    )
    is_default: bool = Field(default=False, description="The organization's default for this provider.")


class ConnectionUpdate(BaseModel):
    """Fields left out stay as they are. ``config`` and ``secrets``, when given, replace the whole document."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = None
    secrets: dict[str, Any] | None = Field(default=None, description="Replaces every secret (write-only).")
    is_default: bool | None = None


class ConnectionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    provider: str
    name: str
    slug: str | None
    description: str
    config: dict[str, Any]
    is_default: bool
    secret_fields_set: list[str] = Field(description="Which secret fields hold a value (never the values).")
    key_version: int = Field(description="The key-encryption-key version the secrets are wrapped under.")
    created_at: Timestamp
    updated_at: Timestamp


class ProviderPublic(BaseModel):
    slug: str
    title: str
    category: str
    description: str
    config_schema: dict[str, Any]
    secrets_schema: dict[str, Any]
    supports_test: bool


class ConnectionTestResult(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = Field(default=None, description="Why it failed; never contains a secret.")
