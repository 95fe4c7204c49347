"""Agents that name a connection in ``permissions.allowed_connections`` keep it from being deleted (409)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.agents.repository import AgentSpecRepository
from virtuousai.connections.service import register_reference_check
from virtuousai.connections.tables import Connection
from virtuousai.store.tenant import TenantContext


def names_connection(ref: str, connection: Connection) -> bool:
    """Whether a connection reference (id, ``slug:<slug>``, ``provider:<provider>``, or a bare slug) is this one."""
    if ref == connection.id:
        return True
    if connection.slug is not None and ref in (connection.slug, f"slug:{connection.slug}"):
        return True
    return bool(connection.is_default) and ref == f"provider:{connection.provider}"


async def agents_referencing(session: AsyncSession, tenant: TenantContext, connection: Connection) -> Sequence[str]:
    found = []
    for spec, version in await AgentSpecRepository(session, tenant).live_with_current_versions():
        allowed = (version.permissions or {}).get("allowed_connections") or []
        if any(names_connection(str(ref), connection) for ref in allowed):
            found.append(f"agent {spec.id} ({spec.slug})")
    return found


register_reference_check("agents", agents_referencing)
