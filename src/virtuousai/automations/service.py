"""Automations: create, update (a new immutable version), apply (create or update by slug), read, delete.

Every spec is validated as a whole before anything is written (``validation.py``): a 422 lists every problem with
its field path, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.registry import default_registry
from virtuousai.automations.repository import AutomationRepository, AutomationVersionRepository
from virtuousai.automations.spec import AutomationSpec, Step
from virtuousai.automations.tables import Automation, AutomationVersion
from virtuousai.automations.validation import Loc, literal_params_errors, summary, validate_spec
from virtuousai.connections.service import ConnectionService
from virtuousai.errors import Conflict, FieldError, NotFound, ValidationFailed
from virtuousai.expressions.evaluation import has_expression
from virtuousai.ids import has_prefix, new_id
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.service import TemplateService
from virtuousai.templates.tables import TemplateKind
from virtuousai.timeutil import utcnow


@dataclass(frozen=True)
class AutomationWithVersion:
    automation: Automation
    version: AutomationVersion

    @property
    def spec(self) -> AutomationSpec:
        return AutomationSpec.model_validate(self.version.spec)


@dataclass(frozen=True)
class Applied:
    result: AutomationWithVersion
    outcome: str  # "created" | "updated" | "unchanged"


class AutomationService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, registry: KindRegistry | None = None) -> None:
        self.session = session
        self.tenant = tenant
        self.registry = registry or default_registry()
        self.automations = AutomationRepository(session, tenant)
        self.versions = AutomationVersionRepository(session, tenant)

    # -- reads ---------------------------------------------------------------------------------------------------

    async def get(self, ref: str) -> AutomationWithVersion:
        automation = await self.automations.by_ref(ref)
        if automation is None:
            raise NotFound(f"automation {ref!r} not found")
        return AutomationWithVersion(automation, await self._version(automation, automation.current_version))

    async def list(self, page: PageRequest) -> PageResult[AutomationWithVersion]:
        result = await self.automations.list_live(page)
        items = [AutomationWithVersion(a, await self._version(a, a.current_version)) for a in result.items]
        return PageResult(items=items, next_cursor=result.next_cursor)

    async def list_versions(self, ref: str, page: PageRequest) -> PageResult[AutomationVersion]:
        automation = (await self.get(ref)).automation
        return await self.versions.list_for(automation.id, page)

    async def get_version(self, ref: str, version: str) -> AutomationWithVersion:
        """``version`` is a number (``3``) or a version id (``autv_…``) of this automation."""
        automation = (await self.get(ref)).automation
        found: AutomationVersion | None = None
        if version.isdigit():
            found = await self.versions.number(automation.id, int(version))
        elif has_prefix(version, "autv"):
            found = await self.versions.get(version)
        if found is None or found.automation_id != automation.id:
            raise NotFound(f"automation {ref!r} has no version {version!r}")
        return AutomationWithVersion(automation, found)

    async def _version(self, automation: Automation, number: int) -> AutomationVersion:
        version = await self.versions.number(automation.id, number)
        if version is None:  # pragma: no cover - the pointer and the version are written in one transaction
            raise NotFound(f"automation {automation.id} version {number} is missing")
        return version

    # -- writes --------------------------------------------------------------------------------------------------

    async def create(
        self, spec: AutomationSpec, *, loc: Loc = ("body",), template_id: str | None = None
    ) -> AutomationWithVersion:
        """Version 1 of a new automation; ``template_id``: made by instantiating that kind=automation template."""
        await self.validate(spec, loc)
        now = utcnow()
        automation = self.automations.add(
            Automation(
                id=new_id("aut"),
                slug=spec.slug,
                name=spec.name,
                description=spec.description,
                current_version=1,
                created_at=now,
                updated_at=now,
                template_id=template_id,
            )
        )
        await self._flush_or_conflict(spec.slug)
        version = self._add_version(automation, spec, 1)
        await self.session.flush()
        await self.session.commit()
        return AutomationWithVersion(automation, version)

    async def update(self, ref: str, spec: AutomationSpec, *, loc: Loc = ("body",)) -> Applied:
        """A new version, unless the spec is unchanged (same content hash): then nothing is written."""
        await self.validate(spec, loc)
        found = await self.get(ref)
        automation = await self.automations.get_for_update(found.automation.id)
        assert automation is not None
        current = await self._version(automation, automation.current_version)
        if current.content_hash == spec.content_hash():
            return Applied(AutomationWithVersion(automation, current), "unchanged")
        number = automation.current_version + 1
        automation.slug, automation.name, automation.description = spec.slug, spec.name, spec.description
        automation.current_version = number
        automation.updated_at = utcnow()
        await self._flush_or_conflict(spec.slug)
        version = self._add_version(automation, spec, number)
        await self.session.flush()
        await self.session.commit()
        return Applied(AutomationWithVersion(automation, version), "updated")

    async def apply(self, spec: AutomationSpec, *, loc: Loc = ("body",), template_id: str | None = None) -> Applied:
        """Create the automation with this slug, or add a version to it (``vai automation apply``).

        With ``template_id`` (instantiating a kind=automation template), an existing automation of that slug must
        have been made from the same template: a template never adds versions to someone else's automation."""
        existing = await self.automations.by_ref(f"slug:{spec.slug}")
        if existing is None:
            return Applied(await self.create(spec, loc=loc, template_id=template_id), "created")
        if template_id is not None and existing.template_id != template_id:
            msg = f"automation {spec.slug!r} exists and was not made from this template; change the slug it renders"
            raise Conflict(msg, errors=[FieldError((*loc, "slug"), msg, "unique")])
        return await self.update(existing.id, spec, loc=loc)

    async def delete(self, ref: str) -> None:
        """Soft delete: the slug is free again; versions and runs stay readable by id through the runs."""
        automation = (await self.get(ref)).automation
        automation.deleted_at = utcnow()
        await self.session.commit()

    async def validate(self, spec: AutomationSpec, loc: Loc = ("body",)) -> None:
        errors = validate_spec(spec, self.registry, loc) + await reference_errors(
            self.session, self.tenant, self.registry, spec, loc
        )
        if errors:
            raise ValidationFailed(summary(errors), errors=errors)

    def _add_version(self, automation: Automation, spec: AutomationSpec, number: int) -> AutomationVersion:
        return self.versions.add(
            AutomationVersion(
                id=new_id("autv"),
                automation_id=automation.id,
                version=number,
                spec=spec.model_dump(mode="json"),
                content_hash=spec.content_hash(),
                created_by=self.tenant.user_id,
                created_at=utcnow(),
            )
        )

    async def _flush_or_conflict(self, slug: str) -> None:
        try:
            await self.session.flush()
        except sa.exc.IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"an automation with slug {slug!r} already exists") from exc


def _takes_connection(model: type[BaseModel]) -> bool:
    return "connection" in model.model_fields or model.model_config.get("extra") == "allow"


async def reference_errors(
    session: AsyncSession, tenant: TenantContext, registry: KindRegistry, spec: AutomationSpec, loc: Loc
) -> list[FieldError]:
    """Templates and connections live in the database: literal refs must resolve in this organization."""
    errors: list[FieldError] = []
    for index, step in enumerate(spec.steps):
        step_loc = (*loc, "steps", index)
        if step.template is not None:
            errors += await _template_step_errors(session, tenant, registry, step, step_loc)
            continue
        literal = step.inputs.get("connection")
        if step.connection is None and isinstance(literal, str) and literal and not has_expression(literal):
            error = await ConnectionService(session, tenant).ref_error(literal, (*step_loc, "inputs", "connection"))
            errors += [error] if error is not None else []
        if step.connection is None:
            continue
        if (
            step.action is not None
            and step.action in registry
            and not _takes_connection(registry.get(step.action).input_model)
        ):
            msg = f"action kind {step.action!r} takes no connection"
            errors.append(FieldError((*step_loc, "connection"), msg, "unknown_connection"))
        elif not has_expression(step.connection):
            error = await ConnectionService(session, tenant).ref_error(step.connection, (*step_loc, "connection"))
            errors += [error] if error is not None else []
    return errors


async def _template_step_errors(
    session: AsyncSession, tenant: TenantContext, registry: KindRegistry, step: Step, step_loc: Loc
) -> list[FieldError]:
    """A template step names a template of kind ``action`` (one ActionRun); its ``inputs`` are the template's params,
    whose literal part must fit the template's current parameters schema."""
    assert step.template is not None
    errors: list[FieldError] = []
    if step.connection is not None:
        msg = "a template step takes its connection from the template (pass it as one of the template's params)"
        errors.append(FieldError((*step_loc, "connection"), msg, "unknown_connection"))
    templates = TemplateService(session, tenant, registry)
    try:
        template = await templates.get_by_ref(step.template)
    except NotFound:
        return [*errors, FieldError((*step_loc, "template"), f"unknown template {step.template!r}", "unknown_template")]
    if template.kind is not TemplateKind.action:
        msg = f"template {step.template!r} is of kind {template.kind.value!r}; a step needs a template of kind 'action'"
        return [*errors, FieldError((*step_loc, "template"), msg, "template_kind")]
    version = await templates.version_of(template)
    return errors + literal_params_errors(version.parameters, step.inputs, (*step_loc, "inputs"))
