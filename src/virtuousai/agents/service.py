"""Agent specs: create, update (a new immutable version), read, list, delete, and the organization's rules.

``spec.parse_spec`` checks the document on its own; this service adds what needs the organization: the slug is
free, every sub-agent exists here, the model is a known alias (or ``provider:model``), a spec another agent
delegates to cannot be deleted. Every failure is raised before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.agents.repository import AgentSpecRepository, AgentSpecVersionRepository
from virtuousai.agents.spec import AgentSpecDocument, SpecErrors, parse_spec
from virtuousai.agents.stats import SpecStats, compute_spec_stats
from virtuousai.agents.tables import AgentSpec, AgentSpecVersion
from virtuousai.errors import Conflict, FieldError, NotFound
from virtuousai.ids import new_id
from virtuousai.llm.aliases import ModelAliasService, check_model_reference
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

SLUG_REF_PREFIX = "slug:"


@dataclass(frozen=True)
class SpecAtVersion:
    spec: AgentSpec
    version: AgentSpecVersion


class AgentSpecService:
    def __init__(self, session: AsyncSession, tenant: TenantContext) -> None:
        self.session = session
        self.tenant = tenant
        self.specs = AgentSpecRepository(session, tenant)
        self.versions = AgentSpecVersionRepository(session, tenant)

    # ---- validation ---------------------------------------------------------------------------------------------

    async def validate(self, markdown: str, *, updating: AgentSpec | None = None) -> AgentSpecDocument:
        """Parse and check against this organization; raises ``ValidationFailed`` (422) with lines and paths."""
        document = parse_spec(markdown)
        errors = SpecErrors(document.lines)
        if updating is None:
            if await self.specs.get_live_by_slug(document.slug) is not None:
                errors.add(("slug",), f"slug {document.slug!r} is already used in this organization", "unique")
        elif document.slug != updating.slug:
            errors.add(("slug",), f"the slug cannot change (it is {updating.slug!r}); create a new agent", "immutable")
        known = await self.specs.live_slugs(document.sub_agents)
        for index, sub in enumerate(document.sub_agents):
            if sub not in known and sub != document.slug:
                errors.add(("sub_agents", index), f"no agent with slug {sub!r} in this organization", "unknown_agent")
        if document.model is not None:
            problem = check_model_reference(
                document.model, await ModelAliasService(self.session, self.tenant).effective()
            )
            if problem is not None:
                errors.add(("model",), problem, "unknown_model")
        errors.raise_if_any()
        return document

    # ---- writes ---------------------------------------------------------------------------------------------------

    def _new_version(
        self, spec: AgentSpec, version: int, markdown: str, document: AgentSpecDocument
    ) -> AgentSpecVersion:
        return AgentSpecVersion(
            id=new_id("agtv"),
            spec_id=spec.id,
            version=version,
            markdown=markdown,
            name=document.name,
            slug=document.slug,
            mode=document.mode,
            model=document.model,
            tools=list(document.tools),
            sub_agents=list(document.sub_agents),
            permissions=document.permissions.as_dict(),
            description=document.description,
            instructions=document.instructions,
            created_at=utcnow(),
            created_by=self.tenant.user_id,
        )

    async def create(self, markdown: str) -> SpecAtVersion:
        document = await self.validate(markdown)
        now = utcnow()
        spec = AgentSpec(
            id=new_id("agt"),
            slug=document.slug,
            name=document.name,
            mode=document.mode,
            description=document.description,
            current_version=1,
            created_at=now,
            updated_at=now,
        )
        self.specs.add(spec)
        await self.session.flush()
        version = self.versions.add(self._new_version(spec, 1, markdown, document))
        await self._commit(document.slug)
        return SpecAtVersion(spec, version)

    async def update(self, ref: str, markdown: str) -> SpecAtVersion:
        spec = await self._get_spec(ref, for_update=True)
        document = await self.validate(markdown, updating=spec)
        spec.current_version += 1
        spec.name, spec.mode, spec.description = document.name, document.mode, document.description
        spec.updated_at = utcnow()
        version = self.versions.add(self._new_version(spec, spec.current_version, markdown, document))
        await self._commit(document.slug)
        return SpecAtVersion(spec, version)

    async def delete(self, ref: str) -> None:
        spec = await self._get_spec(ref, for_update=True)
        callers = sorted(
            other.slug
            for other, current in await self.specs.live_with_current_versions()
            if other.id != spec.id and spec.slug in current.sub_agents
        )
        if callers:
            raise Conflict(
                f"agent {spec.slug!r} is a sub-agent of {', '.join(callers)}; remove it from their sub_agents first",
                callers=callers,
            )
        # Soft delete: versions stay for the runs that pinned them; the slug is free again.
        spec.deleted_at = utcnow()
        await self.session.commit()

    async def _commit(self, slug: str) -> None:
        try:
            await self.session.commit()
        except IntegrityError:
            # A concurrent create took the slug between our check and the insert; the unique index decided.
            await self.session.rollback()
            raise Conflict(
                f"slug {slug!r} is already used in this organization",
                errors=[FieldError(["body", "markdown", "slug"], "already used", "unique")],
            ) from None

    # ---- reads ------------------------------------------------------------------------------------------------

    async def _get_spec(self, ref: str, *, for_update: bool = False) -> AgentSpec:
        """``ref`` is an id or ``slug:<slug>``; another organization's spec is simply not found."""
        if ref.startswith(SLUG_REF_PREFIX):
            spec = await self.specs.get_live_by_slug(ref.removeprefix(SLUG_REF_PREFIX))
        else:
            spec = await (self.specs.get_for_update(ref) if for_update else self.specs.get(ref))
            spec = spec if spec is not None and spec.deleted_at is None else None
        if spec is None:
            raise NotFound(f"agent spec {ref} not found")
        return spec

    async def get(self, ref: str) -> SpecAtVersion:
        spec = await self._get_spec(ref)
        version = await self.versions.get_version(spec.id, spec.current_version)
        if version is None:  # pragma: no cover - written in the same transaction as the spec
            raise NotFound(f"agent spec {ref} has no current version")
        return SpecAtVersion(spec, version)

    async def list(self, page: PageRequest, *, mode: str | None = None) -> PageResult[SpecAtVersion]:
        result = await self.specs.paginate(self.specs.live_query(mode), page)
        current = await self.versions.current_for(list(result.items))
        return PageResult(items=[SpecAtVersion(s, current[s.id]) for s in result.items], next_cursor=result.next_cursor)

    async def list_versions(self, ref: str, page: PageRequest) -> PageResult[AgentSpecVersion]:
        spec = await self._get_spec(ref)
        return await self.versions.paginate(self.versions.for_spec(spec.id), page)

    async def stats(self, ref: str) -> tuple[AgentSpec, SpecStats]:
        spec = await self._get_spec(ref)
        return spec, await compute_spec_stats(self.session, self.tenant, spec.id)
