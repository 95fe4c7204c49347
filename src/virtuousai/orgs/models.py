"""API shapes for organizations, users and API keys (separate from the tables)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.orgs.tables import Role
from virtuousai.timeutil import Timestamp


class OrganizationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: Timestamp


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    email: str
    name: str
    timezone: str
    preferences: dict[str, Any]


class MePublic(BaseModel):
    user: UserPublic
    organization: OrganizationPublic
    role: Role
    timezone: str = Field(description="The user's timezone (IANA name), for display and chat context.")
    api_key_id: str


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=200)
    role: Role | None = Field(default=None, description="Ceiling for this key; default: the caller's role.")
    expires_at: Timestamp | None = Field(default=None, description="Timezone-aware expiry; none means never.")


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    prefix: str
    role: Role
    membership_id: str
    created_at: Timestamp
    last_used_at: Timestamp | None
    expires_at: Timestamp | None
    revoked_at: Timestamp | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The API key. Shown once: it is stored only as a hash.")
