"""The automation spec: what a user writes (YAML or JSON) and what each version stores.

    name: Nightly orders
    slug: nightly-orders
    parameters: {type: object, properties: {day: {type: string}}, required: [day]}
    steps:
      - key: list_shops
        action: echo
        inputs: {shops: [a, b, c]}
      - key: extract
        action: echo
        for_each: ${{ steps.list_shops.output.shops }}
        max_parallel: 2
        inputs: {shop: "${{ item }}", day: "${{ params.day }}"}
      - key: report
        action: echo
        when: ${{ steps.extract.output | length > 0 }}
        inputs: {count: "${{ steps.extract.output | length }}"}
    triggers:
      - type: cron
        expression: "0 6 * * *"
        timezone: Europe/Paris

This module only checks the shape (Pydantic). Checks that need the whole spec or the registry (references, cycles,
kinds, inputs against a kind's schema, cron syntax) are in ``validation.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from virtuousai.expressions.evaluation import has_expression

STEP_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class StepRetry(BaseModel):
    """How often a failed step's ActionRun is attempted in all (default: the kind's own policy)."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(default=1, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, le=3600)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=STEP_KEY_PATTERN, description="Unique in the automation; `steps.<key>` in expressions.")
    action: str | None = Field(
        default=None, description="An action kind (e.g. `echo`). Exactly one of action/template."
    )
    template: str | None = Field(default=None, description="A template ref: id or `slug:<slug>`.")
    connection: str | None = Field(
        default=None, description="Connection ref for the action: id, `slug:<slug>` or `provider:<provider>`."
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="The action's inputs; strings may use `${{ }}`.")
    depends_on: list[str] = Field(
        default_factory=list, description="Step keys this step waits for, beyond those its expressions reference."
    )
    when: bool | str | None = Field(
        default=None, description="Condition (`${{ … }}` or a bare expression); false → the step is SKIPPED."
    )
    for_each: list[Any] | str | None = Field(
        default=None, description="A list, or an expression giving one: one ActionRun per item (`item`, `index`)."
    )
    max_parallel: int | None = Field(default=None, ge=1, le=1000, description="For for_each: ActionRuns at a time.")
    retry: StepRetry | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    on_failure: Literal["fail_run", "continue"] = Field(
        default="fail_run", description="fail_run: the run fails (pending steps are cancelled); continue: go on."
    )
    trigger: Literal["all_success", "all_done"] = Field(
        default="all_success",
        description="all_success: run only if every dependency COMPLETED; all_done: once all are finished.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Step:
        if (self.action is None) == (self.template is None):
            raise ValueError("a step needs exactly one of `action` or `template`")
        if self.max_parallel is not None and self.for_each is None:
            raise ValueError("`max_parallel` only applies with `for_each`")
        if isinstance(self.for_each, str) and not has_expression(self.for_each):
            raise ValueError("`for_each` must be a list or a `${{ … }}` expression giving one")
        return self


class ManualTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["manual"] = "manual"


class CronTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["cron"] = "cron"
    key: str | None = Field(
        default=None, pattern=STEP_KEY_PATTERN, description="Names the trigger (default: `cron_<position>`)."
    )
    expression: str = Field(description="Five-field cron expression, e.g. `0 6 * * 1-5`.", max_length=200)
    timezone: str = Field(default="UTC", description="IANA timezone the expression is read in.", max_length=64)
    overlap: Literal["skip", "queue", "allow"] = Field(
        default="skip",
        description="When a tick comes while a run from this trigger is still going: skip it, queue it, or allow it.",
    )
    catch_up: Literal["none", "last", "all"] = Field(
        default="none", description="Ticks missed while no scheduler ran: none, only the last one, or all."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters for the runs this trigger starts.")


Trigger = Annotated[ManualTrigger | CronTrigger, Field(discriminator="type")]


class AutomationSpec(BaseModel):
    """An automation: a DAG of steps, each one an action (or a template) run as an ActionRun."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(pattern=SLUG_PATTERN, description="Unique in the organization; `slug:<slug>` in paths.")
    description: str = Field(default="", max_length=5000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON schema of the run parameters (`params`)."
    )
    steps: list[Step] = Field(min_length=1, max_length=500)
    triggers: list[Trigger] = Field(default_factory=lambda: [ManualTrigger()])  # type: ignore[arg-type]

    def step(self, key: str) -> Step:
        return next(step for step in self.steps if step.key == key)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the spec: equal specs, equal hash (an unchanged apply is no new version)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def cron_trigger_key(trigger: CronTrigger, position: int) -> str:
    return trigger.key or f"cron_{position}"


def spec_json_schema() -> dict[str, Any]:
    """The JSON schema published at ``GET /api/v1/automations/schema``."""
    return AutomationSpec.model_json_schema()
