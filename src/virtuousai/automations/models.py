"""API shapes for automations (separate from the tables)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.automations.plan import item_index
from virtuousai.automations.runs import RunDetail
from virtuousai.automations.service import AutomationWithVersion
from virtuousai.automations.spec import AutomationSpec
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import AutomationRun, AutomationVersion
from virtuousai.templates.models import TemplateSnapshot
from virtuousai.timeutil import Timestamp


class AutomationPublic(BaseModel):
    id: str
    slug: str
    name: str
    description: str
    version: int = Field(description="The current version; runs started now execute it.")
    version_id: str
    content_hash: str
    spec: AutomationSpec
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, found: AutomationWithVersion) -> AutomationPublic:
        automation, version = found.automation, found.version
        return cls(
            id=automation.id,
            slug=automation.slug,
            name=automation.name,
            description=automation.description,
            version=version.version,
            version_id=version.id,
            content_hash=version.content_hash,
            spec=AutomationSpec.model_validate(version.spec),
            created_at=automation.created_at,
            updated_at=automation.updated_at,
        )


class AutomationVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    automation_id: str
    version: int
    content_hash: str
    spec: AutomationSpec
    created_by: str | None
    created_at: Timestamp

    @classmethod
    def of(cls, version: AutomationVersion) -> AutomationVersionPublic:
        return cls.model_validate(version)


class AutomationRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="Checked against the `parameters` schema.")


class StepRunPublic(BaseModel):
    key: str
    status: StepStatus
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = Field(default=None, description="Why the step was SKIPPED or CANCELLED.")
    attempts: int = Field(description="ActionRun attempts used (all items of a for_each).")
    item_count: int | None = Field(default=None, description="for_each: how many items.")
    action_run_ids: list[str] = Field(description="The ActionRuns of this step, in item order.")
    reused_from: str | None = Field(default=None, description="Retry: the run whose output this step reuses.")
    started_at: Timestamp | None
    finished_at: Timestamp | None


class AutomationRunPublic(BaseModel):
    id: str
    automation_id: str
    version: int
    version_id: str
    status: AutomationRunStatus
    params: dict[str, Any]
    trigger: str = Field(description="manual, cron or retry.")
    trigger_key: str | None
    tick: Timestamp | None = Field(description="cron: the tick this run was started for.")
    retry_of: str | None
    error: dict[str, Any] | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    steps: list[StepRunPublic] | None = Field(default=None, description="Per-step state (on GET of one run).")
    step_counts: dict[str, int] = Field(
        default_factory=dict,
        description='The run\'s steps by status, on every run, listed or read: {"COMPLETED": 2, "RUNNING": 1}.',
    )
    template_snapshot: TemplateSnapshot | None = Field(
        default=None, description="Started from a kind=automation template: what it was made from, as it was."
    )
    template_pins: dict[str, Any] | None = Field(
        default=None,
        description="The template version each template step uses ({ref: {template_id, version}}), fixed at start.",
    )

    @classmethod
    def of(
        cls, run: AutomationRun, detail: RunDetail | None = None, step_counts: dict[str, int] | None = None
    ) -> AutomationRunPublic:
        """The run as the API shows it: with its steps when ``detail`` is given, else ``step_counts`` (listing)."""
        steps = None
        if detail is not None:
            step_counts = dict(Counter(row.status.value for row in detail.steps))
            steps = [
                StepRunPublic(
                    key=row.step_key,
                    status=row.status,
                    output=row.output,
                    error=row.error,
                    reason=row.reason,
                    attempts=row.attempts,
                    item_count=row.item_count,
                    action_run_ids=[
                        ar.id
                        for ar in sorted(
                            detail.action_runs.get(row.step_key, []), key=lambda a: item_index(a.idempotency_key)
                        )
                    ],
                    reused_from=row.reused_from,
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                )
                for row in detail.steps
            ]
        return cls(
            id=run.id,
            automation_id=run.automation_id,
            version=run.version,
            version_id=run.version_id,
            status=run.status,
            params=run.params,
            trigger=run.trigger,
            trigger_key=run.trigger_key,
            tick=run.tick,
            retry_of=run.retry_of,
            error=run.error,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            steps=steps,
            step_counts=step_counts or {},
            template_snapshot=None
            if run.template_snapshot is None
            else TemplateSnapshot.model_validate(run.template_snapshot),
            template_pins=run.template_pins,
        )


class AutomationTemplateInstantiation(BaseModel):
    """What instantiating a kind=automation template answers: the automation it made or reused, and the run."""

    snapshot: TemplateSnapshot
    automation: AutomationPublic
    automation_outcome: Literal["created", "updated", "unchanged"] = Field(
        description="created: a new automation; updated: a new version (the rendered spec differed); unchanged."
    )
    automation_run: AutomationRunPublic
