"""The connection resolver of running actions (``ActionContext.connection(ref)``), given to the runtime's workers.

It delegates to ``resolve_connection`` (the only code that decrypts credentials), in the run's tenant, with a short
session of its own, so the plaintext exists only inside the running action.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.connections.service import resolve_connection
from virtuousai.crypto.kek import KeyProvider
from virtuousai.crypto.providers import build_key_provider
from virtuousai.runtime.context import ConnectionResolver, ResolvedConnection
from virtuousai.store.tenant import TenantContext


class StoredConnections:
    """A ``ConnectionResolverFactory``, built once per process; the key provider is created on first use (runs that
    need no connection never touch the key)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._keys: KeyProvider | None = None

    def keys(self) -> KeyProvider:
        if self._keys is None:
            self._keys = build_key_provider(self.settings)
        return self._keys

    def __call__(self, tenant: TenantContext) -> ConnectionResolver:
        async def resolve(ref: str) -> ResolvedConnection:
            async with self.sessions() as session:
                try:
                    return await resolve_connection(session, tenant, ref, self.keys())
                finally:
                    await session.rollback()

        return resolve
