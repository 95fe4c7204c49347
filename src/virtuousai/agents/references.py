"""Agents that name a connection in ``permissions.allowed_connections`` keep it from being deleted (409)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.agents.loop import OrgConnection
from virtuousai.agents.repository import AgentSpecRepository
from virtuousai.connections.service import register_reference_check
from virtuousai.connections.tables import Connection
from virtuousai.store.tenant import TenantContext


def names_connection(ref: str, connection: Connection) -> bool:
    """Whether a connection reference (id, ``slug:<slug>``, ``provider:<provider>``, or a bare slug) is this one."""
    org_connection = OrgConnection(connection.id, connection.slug, connection.provider, bool(connection.is_default))
    return org_connection.named_by(ref)


async def agents_referencing(session: AsyncSession, tenant: TenantContext, connection: Connection) -> Sequence[str]:
    found = []
    for spec, version in await AgentSpecRepository(session, tenant).live_with_current_versions():
        allowed = (version.permissions or {}).get("allowed_connections") or []
        if any(names_connection(str(ref), connection) for ref in allowed):
            found.append(f"agent {spec.id} ({spec.slug})")
    return found


register_reference_check("agents", agents_referencing)
