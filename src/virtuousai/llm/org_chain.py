"""The organization's chain for one ``model:`` value, from its LLM connections (through the connections resolver)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.connections.repository import ConnectionRepository
from virtuousai.connections.service import resolve_connection
from virtuousai.connections.tables import Connection
from virtuousai.crypto.kek import KeyProvider
from virtuousai.llm.aliases import ModelAliasService, resolve
from virtuousai.llm.chain import DEFAULT_ATTEMPT_TIMEOUT_S, ModelChain
from virtuousai.llm.providers import LLM_PROVIDERS, build_chain
from virtuousai.runtime.context import ActionContext, ResolvedConnection
from virtuousai.store.tenant import TenantContext


async def load_llm_connections(
    session: AsyncSession, tenant: TenantContext, keys: KeyProvider
) -> list[ResolvedConnection]:
    """Every LLM connection of the organization, decrypted (order is applied by ``build_chain``)."""
    repository = ConnectionRepository(session, tenant)
    stmt = repository.base_query().where(Connection.provider.in_(LLM_PROVIDERS)).order_by(Connection.id)
    rows = cast(Sequence[Connection], (await session.scalars(stmt)).all())
    return [await resolve_connection(session, tenant, row.id, keys) for row in rows]


async def load_model_chain(
    session: AsyncSession,
    tenant: TenantContext,
    keys: KeyProvider,
    model: str | None,
    *,
    attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
) -> ModelChain:
    """The chain for a spec's ``model:`` (an alias, ``provider:model``, or ``None`` for the default alias).

    Raises ``ValueError`` for an unknown alias and ``LLMConfigError`` when no connection can serve it. Close the
    chain (``async with``) when done: it owns the SDK clients.
    """
    selection = resolve(model, await ModelAliasService(session, tenant).effective())
    connections = await load_llm_connections(session, tenant, keys)
    return build_chain(connections, selection, attempt_timeout_s=attempt_timeout_s)


async def model_chain_for_action(ctx: ActionContext, model: str) -> ModelChain:
    """The organization's chain for ``model`` inside a running action (``generate_query`` asks ``fast``).

    The aliases and the LLM connections' ids are read with the action's session; each connection is decrypted by the
    action's own resolver, the one path by which a running action sees a secret.
    """
    async with ctx.session() as session:
        tenant = ctx.tenant
        selection = resolve(model, await ModelAliasService(session, tenant).effective())
        repository = ConnectionRepository(session, tenant)
        stmt = repository.base_query().where(Connection.provider.in_(LLM_PROVIDERS)).order_by(Connection.id)
        ids = [row.id for row in cast(Sequence[Connection], (await session.scalars(stmt)).all())]
    connections = [await ctx.connection(connection_id) for connection_id in ids]
    return build_chain(connections, selection)
