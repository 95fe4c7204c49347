"""API shapes for agent specs, their versions, stats and the tool catalog; agent runs, their steps and DAG."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from virtuousai.agents.spec import Mode
from virtuousai.agents.states import AgentRunStatus, StepKind, StepStatus
from virtuousai.agents.tools import ToolCategory, ToolRisk
from virtuousai.timeutil import Timestamp

MARKDOWN_EXAMPLE = (
    "---\nname: Data Analyst\nslug: data-analyst\nmode: primary\ntools:\n  - generate_query\n  - explain_schema\n"
    "---\n\n# Goal\n\nAnalyze connected data sources and answer questions about business metrics.\n"
)


class AgentSpecWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    markdown: str = Field(
        description="The whole spec: YAML frontmatter between '---' lines, then the instructions.",
        examples=[MARKDOWN_EXAMPLE],
    )


class PermissionsPublic(BaseModel):
    allowed_connections: list[str] | None = Field(description="None: not restricted.")
    allowed_actions: list[str] | None = Field(description="None: not restricted.")
    max_cost_per_run: str | None = Field(description="USD, as a decimal string; None: no budget.")


class AgentSpecVersionPublic(BaseModel):
    """One immutable version: the markdown exactly as submitted, and the fields parsed from it."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    spec_id: str
    version: int
    name: str
    slug: str
    mode: Mode
    model: str | None
    tools: list[str]
    sub_agents: list[str]
    permissions: PermissionsPublic
    description: str | None
    instructions: str
    markdown: str
    created_at: Timestamp
    created_by: str | None


class AgentSpecPublic(AgentSpecVersionPublic):
    """A spec at its current version. ``id`` is the spec's; ``version_id`` the current version's."""

    version_id: str
    updated_at: Timestamp


class AgentSpecStatsPublic(BaseModel):
    spec_id: str
    total_runs: int
    success_rate: float = Field(description="Completed runs / total runs, 0..1.")
    avg_duration_ms: float
    crystallization_count: int
    feedback_up: int
    feedback_down: int


class ToolPublic(BaseModel):
    slug: str
    category: ToolCategory
    risk: ToolRisk = Field(description="read: runs at once; write: waits for a human's approval.")
    description: str


# -- runs ----------------------------------------------------------------------------------------------------------


class AgentRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(
        min_length=1,
        max_length=200,
        description="The agent to run: its spec id (agt_…), its slug, or slug:<slug>. Its current version is pinned.",
        examples=["data-analyst"],
    )
    input: str = Field(min_length=1, max_length=100_000, description="The question or task.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="What the caller knows that the agent should (user, organization, time zone, history): given to "
        "the model after the instructions, as JSON.",
    )

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class PendingApproval(BaseModel):
    agent_run_id: str = Field(description="The run whose tool call waits: this one, or a run it delegated to.")
    step_id: str
    tool: str | None
    args: dict[str, Any] | None
    action_run_id: str | None
    inputs_hash: str | None = Field(description="What an approval is bound to: the hash of exactly these arguments.")


class AgentRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    spec_id: str
    spec_version_id: str
    spec_version: int
    status: AgentRunStatus
    reason: str | None = Field(description="Why a FAILED or CANCELLED run ended (a stable code).")
    detail: str | None = Field(description="The same, for humans.")
    input: str
    context: dict[str, Any]
    output: str | None = Field(description="The answer: the model's last text, once COMPLETED.")
    parent_run_id: str | None = Field(description="The run that delegated to this one (call_agent).")
    depth: int
    turn_id: str | None
    message_id: str | None
    cost: str = Field(description="USD so far: every model attempt (failed ones too) and delegated runs.")
    cost_unknown: bool = Field(description="An attempt's price was unknown: the cost is a lower bound.")
    budget: str | None = Field(
        description="USD the run may spend (the spec's max_cost_per_run, or what its caller had left)."
    )
    input_tokens: int
    output_tokens: int
    tool_calls: int
    model_calls: int
    running_s: float = Field(description="Seconds RUNNING before the current stretch (waiting does not count).")
    pending_approvals: list[PendingApproval]
    created_by: str | None
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    cancel_requested_at: Timestamp | None


class AgentRunStepPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    agent_run_id: str
    position: int
    kind: StepKind
    status: StepStatus
    parents: list[str] = Field(
        description="The steps it came from: a tool call's model call; a model call's tool results."
    )
    tool: str | None
    tool_call_id: str | None
    args: dict[str, Any] | None
    action_run_id: str | None
    child_run_id: str | None = Field(description="A delegation's agent run.")
    result: Any = Field(description="A model call: its response; a tool call: what the model was given back.")
    error: dict[str, Any] | None
    retries: int
    cost: str | None
    input_tokens: int
    output_tokens: int
    started_at: Timestamp
    finished_at: Timestamp | None


class DagNode(BaseModel):
    id: str
    position: int
    kind: StepKind
    status: StepStatus
    tool: str | None
    action_run_id: str | None
    child_run_id: str | None


class DagEdge(BaseModel):
    source: str = Field(description="The step it came from.")
    target: str


class AgentRunDag(BaseModel):
    run_id: str
    nodes: list[DagNode]
    edges: list[DagEdge]
    mermaid: str = Field(description="The same graph as Mermaid text (flowchart TD).")


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_id: str | None = Field(
        default=None, description="The waiting call to decide; without it, the one call that waits (two: 409)."
    )
    reason: str | None = Field(default=None, max_length=2000, description="Why (a rejection's is told to the model).")


class FeedbackWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=5000)


class FeedbackPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    agent_run_id: str
    user_id: str
    rating: Literal["up", "down"]
    comment: str | None
    created_at: Timestamp
    updated_at: Timestamp
