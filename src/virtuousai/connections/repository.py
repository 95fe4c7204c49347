from __future__ import annotations

import sqlalchemy as sa

from virtuousai.connections.tables import Connection
from virtuousai.store.tenant import TenantRepository


class ConnectionRepository(TenantRepository[Connection]):
    model = Connection

    def list_query(self, provider: str | None = None) -> sa.Select[tuple[Connection]]:
        stmt = self.base_query()
        return stmt if provider is None else stmt.where(Connection.provider == provider)

    async def get_by_slug(self, slug: str) -> Connection | None:
        result: Connection | None = await self.session.scalar(self.base_query().where(Connection.slug == slug))
        return result

    async def get_default(self, provider: str) -> Connection | None:
        result: Connection | None = await self.session.scalar(
            self.base_query().where(Connection.provider == provider, Connection.is_default.is_(True))
        )
        return result

    async def slug_taken(self, slug: str, *, other_than: str | None = None) -> bool:
        found = await self.get_by_slug(slug)
        return found is not None and found.id != other_than

    async def default_taken(self, provider: str, *, other_than: str | None = None) -> bool:
        found = await self.get_default(provider)
        return found is not None and found.id != other_than
