"""``/api/v1/models/aliases``: read (any member) and replace (admins) the organization's model aliases."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from virtuousai.api.deps import AdminDep, PrincipalDep, SessionDep
from virtuousai.llm.aliases import BUILTIN_ALIASES, DEFAULT_ALIAS, ModelAliasService

router = APIRouter(prefix="/models", tags=["models"])


class ModelAliasesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aliases: dict[str, Any] = Field(
        description="Alias → {provider or connection slug → model name}. Replaces the organization's aliases "
        "(built-ins not listed keep their defaults).",
        examples=[{"fast": {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}}],
    )


class ModelAliasesPublic(BaseModel):
    aliases: dict[str, dict[str, str]] = Field(description="Every alias in effect, built-ins included.")
    organization_aliases: dict[str, dict[str, str]] = Field(description="The ones this organization set.")
    builtin: list[str]
    default_alias: str = Field(description="Used when a spec names no model.")


async def _public(service: ModelAliasService) -> ModelAliasesPublic:
    return ModelAliasesPublic(
        aliases=await service.effective(),
        organization_aliases=await service.organization_aliases(),
        builtin=sorted(BUILTIN_ALIASES),
        default_alias=DEFAULT_ALIAS,
    )


@router.get("/aliases", response_model=ModelAliasesPublic)
async def get_model_aliases(principal: PrincipalDep, session: SessionDep) -> ModelAliasesPublic:
    return await _public(ModelAliasService(session, principal.tenant))


@router.put("/aliases", response_model=ModelAliasesPublic)
async def put_model_aliases(body: ModelAliasesUpdate, principal: AdminDep, session: SessionDep) -> ModelAliasesPublic:
    service = ModelAliasService(session, principal.tenant)
    await service.replace(body.aliases)
    return await _public(service)
