"""The tools an agent may be granted, as data (seeds 001 and 002, "Available Tools" / "Tool Access").

Spec validation checks ``tools:`` against this catalog and ``GET /api/v1/tools`` lists it. A tool is run as the
action kind of the same slug (its inputs are the kind's input model, offered to the model as the tool's JSON
schema; the kind's risk decides whether a call waits for approval) — but ``call_agent``, which the agent runtime
does itself (a delegated AgentRun). A tool whose kind is not loaded is not offered. ``register_tool`` adds one (a
plugin's, a test's).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ToolRisk(enum.StrEnum):
    read = "read"  # only retrieves data: runs without approval
    write = "write"  # modifies data or creates resources: waits for a human's approval


class ToolCategory(enum.StrEnum):
    data = "data"
    research = "research"
    delegation = "delegation"
    output = "output"
    integration = "integration"


@dataclass(frozen=True)
class ToolInfo:
    slug: str
    category: ToolCategory
    risk: ToolRisk
    description: str


CALL_AGENT = "call_agent"

TOOLS: dict[str, ToolInfo] = {
    tool.slug: tool
    for tool in (
        ToolInfo(
            "generate_query",
            ToolCategory.data,
            ToolRisk.read,
            "Generate and execute SQL queries against connected schemas",
        ),
        ToolInfo("explain_schema", ToolCategory.data, ToolRisk.read, "Explain table structures and column meanings"),
        ToolInfo("web_search", ToolCategory.research, ToolRisk.read, "Search the web via Tavily API"),
        ToolInfo("fetch_page", ToolCategory.research, ToolRisk.read, "Extract readable content from URLs"),
        ToolInfo(CALL_AGENT, ToolCategory.delegation, ToolRisk.read, "Invoke another agent by slug"),
        ToolInfo("create_flashboard", ToolCategory.output, ToolRisk.write, "Build a persistent dashboard from data"),
        ToolInfo(
            "http_request", ToolCategory.integration, ToolRisk.write, "Make arbitrary HTTP requests to external APIs"
        ),
    )
}


def register_tool(tool: ToolInfo) -> ToolInfo:
    """Add a tool to the catalog (its action kind has the same slug); idempotent for the same tool."""
    if tool.slug in TOOLS and TOOLS[tool.slug] != tool:
        raise ValueError(f"tool {tool.slug!r} is declared twice")
    TOOLS[tool.slug] = tool
    return tool
