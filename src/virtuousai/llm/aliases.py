"""Model aliases: specs say ``model: fast`` and each organization decides what ``fast`` means.

An alias maps a *target* (a provider name, or a connection slug for a specific server) to a model name::

    fast:         {openai: gpt-4.1-mini, anthropic: claude-haiku-4-5, ollama-local: llama3.1:8b}

The chain for ``fast`` walks the organization's LLM connections in their configured order (primary, secondary,
tertiary) and gives each the model the alias names for its slug, else for its provider, else the connection's own
``config.model``. So the provider order is an operations decision (connections), and the model per task is a
product decision (aliases).

A concrete ``provider:model`` (``anthropic:claude-sonnet-4-5``, or ``<connection-slug>:<model>``) pins that model:
only the connections of that provider (or that slug) serve it, in their order; other vendors are not tried, since
they cannot serve that model.

Aliases live in ``organizations.settings["model_aliases"]``. ``orchestrator`` (the default when a spec names no
model) and ``fast`` are built in; an organization may redefine them or add its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.errors import FieldError, NotFound, ValidationFailed
from virtuousai.orgs.tables import Organization
from virtuousai.store.tenant import TenantContext

SETTINGS_KEY = "model_aliases"
DEFAULT_ALIAS = "orchestrator"
BUILTIN_ALIASES: dict[str, dict[str, str]] = {
    "orchestrator": {"openai": "gpt-4.1", "anthropic": "claude-sonnet-4-5"},
    "fast": {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"},
}
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MODEL_NAME = re.compile(r"^[^\s]{1,200}$")


@dataclass(frozen=True)
class ModelSelection:
    """What a spec's ``model:`` resolved to: a model per target, and whether connections' defaults may fill in."""

    requested: str
    models: Mapping[str, str]
    use_connection_defaults: bool

    def model_for(self, provider: str, slug: str | None, default_model: str | None) -> str | None:
        if slug is not None and slug in self.models:
            return self.models[slug]
        if provider in self.models:
            return self.models[provider]
        return default_model if self.use_connection_defaults else None


def is_concrete(model: str) -> bool:
    return ":" in model


def check_model_reference(model: str, aliases: Mapping[str, Mapping[str, str]]) -> str | None:
    """``None`` if ``model`` is a known alias or a well-formed ``provider:model``; otherwise what is wrong."""
    if is_concrete(model):
        target, _, name = model.partition(":")
        if not TARGET_NAME.match(target) or not MODEL_NAME.match(name):
            return f"{model!r} is not a model reference: expected an alias or 'provider:model'"
        return None
    if model not in aliases:
        known = ", ".join(sorted(aliases))
        return f"unknown model alias {model!r} (aliases in this organization: {known})"
    return None


def resolve(model: str | None, aliases: Mapping[str, Mapping[str, str]]) -> ModelSelection:
    """Resolve a spec's ``model:`` (``None`` means the default alias). Raises ``ValueError`` if it is unknown."""
    requested = model or DEFAULT_ALIAS
    problem = check_model_reference(requested, aliases)
    if problem is not None:
        raise ValueError(problem)
    if is_concrete(requested):
        target, _, name = requested.partition(":")
        return ModelSelection(requested=requested, models={target: name}, use_connection_defaults=False)
    return ModelSelection(requested=requested, models=dict(aliases[requested]), use_connection_defaults=True)


def validate_aliases(raw: Any) -> dict[str, dict[str, str]]:
    """Check an aliases document from the API; every problem is reported with its path."""
    errors: list[FieldError] = []
    if not isinstance(raw, Mapping):
        raise ValidationFailed.at(["body", "aliases"], "must map alias names to {target: model}")
    result: dict[str, dict[str, str]] = {}
    for alias, targets in raw.items():
        loc: list[str | int] = ["body", "aliases", str(alias)]
        if not isinstance(alias, str) or not ALIAS_NAME.match(alias):
            errors.append(FieldError(loc, "alias names are lowercase letters, digits, '-' and '_' (max 40)"))
            continue
        if not isinstance(targets, Mapping) or not targets:
            errors.append(FieldError(loc, "must map at least one provider or connection slug to a model name"))
            continue
        result[alias] = {}
        for target, name in targets.items():
            if not isinstance(target, str) or not TARGET_NAME.match(target):
                errors.append(FieldError([*loc, str(target)], "not a provider name or connection slug"))
            elif not isinstance(name, str) or not MODEL_NAME.match(name):
                errors.append(FieldError([*loc, target], "model names are non-empty and contain no spaces"))
            else:
                result[alias][target] = name
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid alias entr{'y' if len(errors) == 1 else 'ies'}", errors=errors)
    return result


class ModelAliasService:
    """Reads and replaces an organization's aliases (stored in ``organizations.settings``)."""

    def __init__(self, session: AsyncSession, tenant: TenantContext) -> None:
        self.session = session
        self.tenant = tenant

    async def _organization(self) -> Organization:
        org = await self.session.get(Organization, self.tenant.tenant_id)
        if org is None:
            raise NotFound("organization not found")
        return org

    async def organization_aliases(self) -> dict[str, dict[str, str]]:
        """What the organization set itself (without the built-ins)."""
        org = await self._organization()
        stored = (org.settings or {}).get(SETTINGS_KEY) or {}
        return {alias: dict(targets) for alias, targets in stored.items()}

    async def effective(self) -> dict[str, dict[str, str]]:
        """Built-ins overlaid with the organization's own (an alias is replaced whole, not merged)."""
        return {**{k: dict(v) for k, v in BUILTIN_ALIASES.items()}, **await self.organization_aliases()}

    async def replace(self, raw: Any) -> dict[str, dict[str, str]]:
        aliases = validate_aliases(raw)
        org = await self._organization()
        # A new dict, so SQLAlchemy sees the JSON column change.
        org.settings = {**(org.settings or {}), SETTINGS_KEY: aliases}
        await self.session.commit()
        return await self.effective()
