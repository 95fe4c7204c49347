"""Instantiating a template of kind ``automation``, whose body is an automation spec.

``POST /api/v1/templates/{ref}/instantiate {params}`` on such a template:

1. the templates service checks ``params`` against the template's schema (defaults applied) and renders the body:
   expressions naming only ``params`` are evaluated now, the others are left to the run, which runs with the
   same params (``templates/rendering.py``);
2. the rendered body must be a valid automation spec: 422 at ``template.rendered.<path>``, nothing stored. A body
   without ``parameters`` of its own takes the template's schema, so the automation documents its params;
3. the automation with the rendered slug is created, or gets a new version when the rendered spec differs (an
   identical one is reused). An automation of that slug that this template did not make is never touched (409);
4. a run of that version starts with the params, ``trigger: template``, and the template snapshot stored on the run,
   which stays as it was whatever happens to the template later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.registry import default_registry
from virtuousai.automations.runs import AutomationRunService
from virtuousai.automations.service import AutomationService, AutomationWithVersion
from virtuousai.automations.spec import AutomationSpec
from virtuousai.automations.tables import AutomationRun
from virtuousai.automations.validation import Loc, summary
from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.orchestration.orchestrator import Orchestrator
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.store.tenant import TenantContext
from virtuousai.templates.models import TemplateInstantiate, TemplateSnapshot
from virtuousai.templates.service import TemplateService
from virtuousai.templates.tables import TemplateKind

RENDERED_LOC: Loc = ("template", "rendered")


@dataclass(frozen=True)
class TemplateRun:
    snapshot: TemplateSnapshot
    automation: AutomationWithVersion
    automation_outcome: str  # created | updated | unchanged
    run: AutomationRun


class AutomationTemplateService:
    def __init__(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        orchestrator: Orchestrator,
        registry: KindRegistry | None = None,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.orchestrator = orchestrator
        self.registry = registry or default_registry()

    async def instantiate(self, ref: str, request: TemplateInstantiate) -> TemplateRun:
        if request.idempotency_key is not None:
            # A run is keyed by its automation run id; an idempotency key here would promise what nothing enforces.
            msg = "automation templates take no idempotency key (each instantiation starts a run)"
            raise ValidationFailed.at(["body", "idempotency_key"], msg)
        snapshot = await TemplateService(self.session, self.tenant, self.registry).snapshot(
            ref, request.params, version=request.version
        )
        if snapshot.kind is not TemplateKind.automation:
            raise ValidationFailed.at(["path", "ref"], f"template {ref!r} is of kind {snapshot.kind.value!r}")
        spec = rendered_spec(snapshot)
        applied = await AutomationService(self.session, self.tenant, self.registry).apply(
            spec, loc=RENDERED_LOC, template_id=snapshot.template_id
        )
        run = await AutomationRunService(self.session, self.tenant, self.orchestrator).start_version(
            applied.result, snapshot.params, trigger="template", template_snapshot=snapshot.model_dump(mode="json")
        )
        return TemplateRun(snapshot, applied.result, applied.outcome, run)


def rendered_spec(snapshot: TemplateSnapshot) -> AutomationSpec:
    """The rendered body as an automation spec (shape only; the service validates the rest)."""
    body: dict[str, Any] = dict(snapshot.rendered)
    body.setdefault("parameters", snapshot.parameters)
    try:
        return AutomationSpec.model_validate(body)
    except ValidationError as exc:
        errors = [FieldError((*RENDERED_LOC, *error["loc"]), error["msg"], error["type"]) for error in exc.errors()]
        raise ValidationFailed(summary(errors), errors=errors) from None
