"""API shapes for agent specs, their versions, stats and the tool catalog."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from virtuousai.agents.spec import Mode
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
