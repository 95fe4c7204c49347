"""Queries for agent specs and versions; every read starts from ``base_query()`` (this tenant only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa

from virtuousai.agents.tables import AgentSpec, AgentSpecVersion
from virtuousai.store.tenant import TenantRepository


class AgentSpecRepository(TenantRepository[AgentSpec]):
    model = AgentSpec

    def live_query(self, mode: str | None = None) -> sa.Select[tuple[AgentSpec]]:
        stmt = self.base_query().where(AgentSpec.deleted_at.is_(None))
        return stmt if mode is None else stmt.where(AgentSpec.mode == mode)

    async def get_live(self, spec_id: str) -> AgentSpec | None:
        result: AgentSpec | None = await self.session.scalar(self.live_query().where(AgentSpec.id == spec_id))
        return result

    async def get_live_by_slug(self, slug: str) -> AgentSpec | None:
        result: AgentSpec | None = await self.session.scalar(self.live_query().where(AgentSpec.slug == slug))
        return result

    async def live_slugs(self, slugs: Sequence[str]) -> set[str]:
        if not slugs:
            return set()
        rows = await self.session.scalars(self.live_query().where(AgentSpec.slug.in_(list(slugs))))
        return {spec.slug for spec in cast(Sequence[AgentSpec], rows.all())}

    async def live_with_current_versions(self) -> list[tuple[AgentSpec, AgentSpecVersion]]:
        stmt = (
            sa.select(AgentSpec, AgentSpecVersion)
            .join(
                AgentSpecVersion,
                sa.and_(
                    AgentSpecVersion.tenant_id == AgentSpec.tenant_id,
                    AgentSpecVersion.spec_id == AgentSpec.id,
                    AgentSpecVersion.version == AgentSpec.current_version,
                ),
            )
            .where(AgentSpec.tenant_id == self.tenant_id, AgentSpec.deleted_at.is_(None))
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]


class AgentSpecVersionRepository(TenantRepository[AgentSpecVersion]):
    model = AgentSpecVersion

    def for_spec(self, spec_id: str) -> sa.Select[tuple[AgentSpecVersion]]:
        return self.base_query().where(AgentSpecVersion.spec_id == spec_id)

    async def get_version(self, spec_id: str, version: int) -> AgentSpecVersion | None:
        result: AgentSpecVersion | None = await self.session.scalar(
            self.for_spec(spec_id).where(AgentSpecVersion.version == version)
        )
        return result

    async def current_for(self, specs: Sequence[AgentSpec]) -> dict[str, AgentSpecVersion]:
        """The current version of each spec, in one query."""
        if not specs:
            return {}
        pairs = [
            sa.and_(AgentSpecVersion.spec_id == s.id, AgentSpecVersion.version == s.current_version) for s in specs
        ]
        rows = await self.session.scalars(self.base_query().where(sa.or_(*pairs)))
        return {v.spec_id: v for v in cast(Sequence[AgentSpecVersion], rows.all())}
