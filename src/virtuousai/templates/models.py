"""API shapes for templates, their versions and instantiation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.actions.models import ActionRunPublic
from virtuousai.templates.tables import TemplateKind
from virtuousai.timeutil import Timestamp

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
DEFAULT_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: TemplateKind
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(pattern=SLUG_PATTERN, description="Reference it as `slug:<slug>`.")
    description: str = Field(default="", max_length=2000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_PARAMETERS), description="A JSON Schema for the params object."
    )
    body: dict[str, Any] = Field(
        description="kind=action: {kind, inputs, priority?, timeout_s?, max_attempts?}; strings may hold "
        "${{ params.<name> }} placeholders."
    )


class TemplateUpdate(BaseModel):
    """Changing ``parameters`` or ``body`` creates a new immutable version; the other fields are metadata."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    parameters: dict[str, Any] | None = None
    body: dict[str, Any] | None = None


class TemplateVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    template_id: str
    version: int
    parameters: dict[str, Any]
    body: dict[str, Any]
    content_hash: str = Field(description="sha256 of the canonical JSON of {kind, parameters, body}.")
    created_by: str | None
    created_at: Timestamp


class TemplatePublic(BaseModel):
    id: str
    kind: TemplateKind
    name: str
    slug: str
    description: str
    current_version: int
    content_hash: str
    parameters: dict[str, Any]
    body: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class TemplateInstantiate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated against the template's parameters.")
    version: int | None = Field(default=None, ge=1, description="Default: the current version.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class TemplateSnapshot(BaseModel):
    """What a run keeps of the template it came from, whatever happens to the template later."""

    template_id: str
    template_slug: str
    kind: TemplateKind
    version: int
    version_id: str
    version_hash: str
    parameters: dict[str, Any]
    body: dict[str, Any] = Field(description="The version's body exactly as stored, placeholders included.")
    params: dict[str, Any] = Field(description="The params used, defaults applied.")
    rendered: dict[str, Any] = Field(description="The body with the params substituted.")


class TemplateInstantiation(BaseModel):
    snapshot: TemplateSnapshot
    run: ActionRunPublic
    created: bool = Field(description="False: an earlier run with the same idempotency key and inputs.")
