"""The tools an agent may be granted, as data (seeds 001 and 002, "Available Tools" / "Tool Access").

Spec validation checks ``tools:`` against this catalog, ``GET /api/v1/tools`` lists it, and the agent runtime
will look up each tool's risk here: read tools run at once, write tools park the run for approval.
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
