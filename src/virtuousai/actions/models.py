"""API shapes for actions and action runs (separate from the tables)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from virtuousai.ids import AGENT_RUN_PREFIX, AUTOMATION_RUN_PREFIX, has_prefix
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import RunOrigin
from virtuousai.timeutil import Timestamp


class ActionRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=100, description="An action kind's slug (see GET /actions).")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Validated against the kind's input schema.")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Same key and same inputs return the same run; same key with other inputs is a 409.",
    )
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first.")
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86_400, description="Default: the kind's.")
    max_attempts: int | None = Field(default=None, ge=1, le=100, description="Default: the kind's retry policy.")


class RunError(BaseModel):
    """Why the run failed; a kind may add facts about it (``generate_query``: the SQL it tried, and where)."""

    model_config = ConfigDict(extra="allow")
    type: str
    message: str


class ActionRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    status: RunStatus
    inputs: dict[str, Any]
    inputs_hash: str = Field(description="sha256 of the canonical JSON of `inputs`; approvals are bound to it.")
    output: dict[str, Any] | None
    error: RunError | None
    idempotency_key: str | None
    priority: int
    timeout_s: float
    max_attempts: int
    attempt: int
    origin: RunOrigin
    parent_run_id: str | None = Field(
        description="The automation run (`arun_…`) or agent run (`agrun_…`) this run is a step or tool call of."
    )
    step_key: str | None
    turn_id: str | None
    message_id: str | None
    trigger_id: str | None
    template_snapshot: dict[str, Any] | None = Field(
        default=None, description="For runs made from a template: the exact body, parameters and version used."
    )
    created_at: Timestamp
    available_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    cancel_requested_at: Timestamp | None
    requires_approval: bool
    approved_by: str | None
    approved_at: Timestamp | None
    rejected_by: str | None
    rejected_at: Timestamp | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def automation_run_id(self) -> str | None:
        """The automation run whose step this is (``parent_run_id`` when it is one)."""
        return self.parent_run_id if has_prefix(self.parent_run_id, AUTOMATION_RUN_PREFIX) else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def agent_run_id(self) -> str | None:
        """The agent run whose tool call this is (``parent_run_id`` when it is one)."""
        return self.parent_run_id if has_prefix(self.parent_run_id, AGENT_RUN_PREFIX) else None


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs_hash: str = Field(
        min_length=64, max_length=64, description="The `inputs_hash` of the run as the approver saw it."
    )
    reason: str | None = Field(default=None, max_length=2000)


class RunEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    kind: str
    data: dict[str, Any]
    created_at: Timestamp


class RetryPolicyPublic(BaseModel):
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    jitter: float


class ActionKindPublic(BaseModel):
    slug: str
    description: str
    risk: Literal["read", "write"]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    default_timeout_s: float
    retry: RetryPolicyPublic


class KindApprovalPublic(BaseModel):
    kind: str
    risk: Literal["read", "write"]
    requires_approval: bool
    source: Literal["default", "organization"] = Field(
        description="`default`: write kinds need approval, read kinds do not; `organization`: set by an admin."
    )


class ApprovalPolicyPublic(BaseModel):
    kinds: list[KindApprovalPublic]


class KindApprovalUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requires_approval: bool | None = Field(description="null resets the kind to the default.")
