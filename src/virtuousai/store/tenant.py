"""The tenant-scoped base repository: every read of a tenant-owned table starts from ``base_query()``.

The tenant comes from the authenticated request (``TenantContext``), never from a body or a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.store.base import TenantMixin
from virtuousai.store.pagination import PageRequest, PageResult, paginate

ModelT = TypeVar("ModelT", bound=TenantMixin)


@dataclass(frozen=True)
class TenantContext:
    """Who is acting, for whom. Built by authentication (API) or by the CLI/worker from a stored row."""

    tenant_id: str
    user_id: str | None = None
    role: str | None = None
    api_key_id: str | None = None


class TenantRepository(Generic[ModelT]):
    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession, tenant: TenantContext) -> None:
        self.session = session
        self.tenant = tenant

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    def base_query(self) -> sa.Select[tuple[ModelT]]:
        return sa.select(self.model).where(self.model.tenant_id == self.tenant_id)

    async def get(self, id: str) -> ModelT | None:
        result: ModelT | None = await self.session.scalar(self.base_query().where(self.model.id == id))
        return result

    async def get_for_update(self, id: str) -> ModelT | None:
        result: ModelT | None = await self.session.scalar(
            self.base_query().where(self.model.id == id).with_for_update()
        )
        return result

    async def paginate(self, stmt: sa.Select[tuple[ModelT]], page: PageRequest) -> PageResult[ModelT]:
        return await paginate(self.session, stmt, self.model.id, page)

    def add(self, obj: ModelT) -> ModelT:
        """Stage a new row for this tenant; the tenant is set here, whatever the caller put there."""
        obj.tenant_id = self.tenant_id
        self.session.add(obj)
        return obj

    async def delete(self, obj: ModelT) -> None:
        if obj.tenant_id != self.tenant_id:  # defensive: objects only ever come from base_query()
            raise PermissionError("cross-tenant delete")
        await self.session.delete(obj)
