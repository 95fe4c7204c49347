"""Templates: content validation, immutable versions, and instantiation with an audit snapshot.

A template's content (the parameters' JSON schema and the body) is versioned: every change writes a new
``TemplateVersion`` and moves ``current_version``; a version row is never updated. Instantiating validates the params,
renders the body (``rendering.render_body``) and stores a ``TemplateSnapshot`` on the run it creates, so a run shows
exactly what it was made from whatever happens to the template later (even its deletion).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.registry import default_registry
from virtuousai.actions.service import ActionRunService, CreatedRun
from virtuousai.errors import Conflict, FieldError, NotFound, ValidationFailed
from virtuousai.expressions.evaluation import GLOBAL_NAMES, ITEM_NAMES
from virtuousai.ids import new_id
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.models import TemplateCreate, TemplateInstantiate, TemplateSnapshot, TemplateUpdate
from virtuousai.templates.rendering import (
    TEMPLATE_NAMES,
    RenderError,
    body_expression_errors,
    params_errors,
    render_body,
    schema_errors,
    with_defaults,
)
from virtuousai.templates.repository import TemplateRepository, TemplateVersionRepository
from virtuousai.templates.tables import Template, TemplateKind, TemplateVersion

ACTION_BODY_FIELDS = frozenset({"kind", "inputs", "priority", "timeout_s", "max_attempts"})
# Names an automation template's body may use beyond ``params``: the engine evaluates those at run time.
AUTOMATION_RUN_NAMES = (GLOBAL_NAMES | ITEM_NAMES) - TEMPLATE_NAMES


def content_hash(kind: TemplateKind, parameters: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of what a version is: equal content hashes equal, whoever wrote it."""
    doc = {"kind": kind.value, "parameters": parameters, "body": body}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Instantiated:
    snapshot: TemplateSnapshot
    created: CreatedRun


def render_snapshot(
    template: Template,
    stored: TemplateVersion,
    params: Mapping[str, Any],
    params_loc: list[str | int] | None = None,
) -> TemplateSnapshot:
    """Check ``params`` against one version of a template and render its body: what an instantiation uses and
    stores. Pure (an automation run's plan renders its template steps with it)."""
    params_loc = params_loc or ["body", "params"]
    errors = params_errors(stored.parameters, params, params_loc)
    if errors:
        raise ValidationFailed(_summary(errors), errors=errors)
    complete = with_defaults(stored.parameters, params)
    try:
        rendered = render_body(stored.body, complete, params_loc)
    except RenderError as exc:
        raise ValidationFailed.at(exc.loc, str(exc)) from None
    return TemplateSnapshot(
        template_id=template.id,
        template_slug=template.slug,
        kind=template.kind,
        version=stored.version,
        version_id=stored.id,
        version_hash=stored.content_hash,
        parameters=stored.parameters,
        body=stored.body,
        params=complete,
        rendered=rendered,
    )


def _summary(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])


class TemplateService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, registry: KindRegistry | None = None) -> None:
        self.session = session
        self.tenant = tenant
        self.registry = registry or default_registry()
        self.templates = TemplateRepository(session, tenant)
        self.versions = TemplateVersionRepository(session, tenant)

    # ---- reads ------------------------------------------------------------------------------------------------

    async def list_templates(self, page: PageRequest, *, kind: TemplateKind | None = None) -> PageResult[Template]:
        stmt = self.templates.base_query()
        if kind is not None:
            stmt = stmt.where(Template.kind == kind)
        return await self.templates.paginate(stmt, page)

    async def get_by_ref(self, ref: str) -> Template:
        found = (
            await self.templates.get_by_slug(ref.removeprefix("slug:"))
            if ref.startswith("slug:")
            else await self.templates.get(ref)
        )
        if found is None:
            raise NotFound(f"template {ref!r} not found")
        return found

    async def version_of(self, template: Template, version: int | None = None) -> TemplateVersion:
        number = version if version is not None else template.current_version
        found = await self.versions.get_version(template.id, number)
        if found is None:
            raise NotFound(f"template {template.id} has no version {number}")
        return found

    async def list_versions(self, ref: str, page: PageRequest) -> PageResult[TemplateVersion]:
        template = await self.get_by_ref(ref)
        return await self.versions.paginate(self.versions.of_template(template.id), page)

    # ---- writes -----------------------------------------------------------------------------------------------

    async def create(self, body: TemplateCreate) -> tuple[Template, TemplateVersion]:
        self._check_content(body.kind, body.parameters, body.body)
        await self._check_slug(body.slug, other_than=None)
        template = Template(
            id=new_id("tpl"),
            kind=body.kind,
            name=body.name,
            slug=body.slug,
            description=body.description,
            current_version=1,
        )
        self.templates.add(template)
        version = self._new_version(template, 1, body.parameters, body.body)
        await self.session.commit()
        return template, version

    async def update(self, ref: str, body: TemplateUpdate) -> tuple[Template, TemplateVersion]:
        template = await self.get_by_ref(ref)
        current = await self.version_of(template)
        parameters = body.parameters if body.parameters is not None else current.parameters
        new_body = body.body if body.body is not None else current.body
        self._check_content(template.kind, parameters, new_body)
        if body.slug is not None:
            await self._check_slug(body.slug, other_than=template.id)
            template.slug = body.slug
        if body.name is not None:
            template.name = body.name
        if body.description is not None:
            template.description = body.description
        version = current
        if content_hash(template.kind, parameters, new_body) != current.content_hash:
            template.current_version = current.version + 1
            version = self._new_version(template, template.current_version, parameters, new_body)
        await self.session.commit()
        return template, version

    async def delete(self, ref: str) -> None:
        """Delete the template and its versions. Runs made from it keep their snapshots."""
        template = await self.get_by_ref(ref)
        await self.session.execute(
            sa.delete(TemplateVersion).where(
                TemplateVersion.tenant_id == self.tenant.tenant_id, TemplateVersion.template_id == template.id
            )
        )
        await self.templates.delete(template)
        await self.session.commit()

    def _new_version(
        self, template: Template, number: int, parameters: dict[str, Any], body: dict[str, Any]
    ) -> TemplateVersion:
        version = TemplateVersion(
            id=new_id("tplv"),
            template_id=template.id,
            version=number,
            parameters=parameters,
            body=body,
            content_hash=content_hash(template.kind, parameters, body),
            created_by=self.tenant.user_id,
        )
        self.versions.add(version)
        return version

    async def _check_slug(self, slug: str, *, other_than: str | None) -> None:
        found = await self.templates.get_by_slug(slug)
        if found is not None and found.id != other_than:
            raise Conflict(
                f"slug {slug!r} is already used", errors=[FieldError(["body", "slug"], "already used", "unique")]
            )

    def _check_content(self, kind: TemplateKind, parameters: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        errors = schema_errors(parameters, ["body", "parameters"])
        declared = set((parameters.get("properties") or {}).keys())
        later_names = AUTOMATION_RUN_NAMES if kind is TemplateKind.automation else frozenset()
        errors += body_expression_errors(body, declared, later_names, ["body", "body"])
        if kind is TemplateKind.action:
            errors += self._action_body_errors(body)
        if errors:
            raise ValidationFailed(_summary(errors), errors=errors)

    def _action_body_errors(self, body: Mapping[str, Any]) -> list[FieldError]:
        loc: list[str | int] = ["body", "body"]
        errors = [
            FieldError([*loc, key], "unknown field of an action template") for key in body.keys() - ACTION_BODY_FIELDS
        ]
        kind = body.get("kind")
        if not isinstance(kind, str) or kind not in self.registry:
            errors.append(FieldError([*loc, "kind"], f"not an action kind: {kind!r} (see GET /api/v1/actions)"))
        if not isinstance(body.get("inputs", {}), Mapping):
            errors.append(FieldError([*loc, "inputs"], "must be an object"))
        return errors

    # ---- instantiation ----------------------------------------------------------------------------------------

    async def snapshot(
        self,
        ref: str,
        params: Mapping[str, Any],
        *,
        version: int | None = None,
        params_loc: list[str | int] | None = None,
    ) -> TemplateSnapshot:
        """Validate ``params`` and render the body, without creating anything (automations build on this).

        ``params_loc`` is where the caller's params are, for 422 paths (the API: ``body.params``)."""
        template = await self.get_by_ref(ref)
        return render_snapshot(template, await self.version_of(template, version), params, params_loc)

    async def instantiate(self, ref: str, request: TemplateInstantiate) -> Instantiated:
        """kind=action: create the ActionRun, with the snapshot stored on it."""
        snapshot = await self.snapshot(ref, request.params, version=request.version)
        if snapshot.kind is not TemplateKind.action:
            raise ValidationFailed.at(
                ["path", "ref"], "automation templates are instantiated through the automations API"
            )
        rendered = snapshot.rendered
        created = await ActionRunService(self.session, self.tenant, self.registry).create(
            kind=rendered["kind"],
            inputs=rendered.get("inputs", {}),
            idempotency_key=request.idempotency_key,
            priority=rendered.get("priority", 0),
            timeout_s=rendered.get("timeout_s"),
            max_attempts=rendered.get("max_attempts"),
            template_snapshot=snapshot.model_dump(mode="json"),
            loc_prefix=("template", "rendered"),
        )
        return Instantiated(snapshot=snapshot, created=created)
