"""The example agents of seeds/002 (``examples/agents/*.md``), loaded into an organization (the demo's).

Loading is idempotent: an agent whose slug already exists is left as it is. Agents are created after the agents
they delegate to, so every ``sub_agents`` entry exists when it is checked.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.agents.service import AgentSpecService
from virtuousai.agents.spec import AgentSpecDocument, parse_spec
from virtuousai.store.tenant import TenantContext

# src/virtuousai/agents/examples.py -> the repository root's examples/agents
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples" / "agents"


def read_examples(directory: Path = EXAMPLES_DIR) -> list[tuple[AgentSpecDocument, str]]:
    """Every ``*.md`` in ``directory``, parsed, ordered so an agent comes after the agents it delegates to."""
    if not directory.is_dir():
        raise FileNotFoundError(f"example agents not found at {directory}")
    pending: dict[str, tuple[AgentSpecDocument, str]] = {}
    for path in sorted(directory.glob("*.md")):
        markdown = path.read_text(encoding="utf-8")
        document = parse_spec(markdown)
        pending[document.slug] = (document, markdown)
    ordered: list[tuple[AgentSpecDocument, str]] = []
    placed: set[str] = set()
    while pending:
        ready = [
            slug for slug, (doc, _) in pending.items() if all(s in placed or s not in pending for s in doc.sub_agents)
        ]
        if not ready:
            raise ValueError(f"example agents delegate to each other in a cycle: {', '.join(sorted(pending))}")
        for slug in sorted(ready):
            ordered.append(pending.pop(slug))
            placed.add(slug)
    return ordered


async def load_example_agents(
    session: AsyncSession, tenant: TenantContext, directory: Path = EXAMPLES_DIR
) -> list[str]:
    """Create the example agents the organization does not have yet; returns the slugs created."""
    service = AgentSpecService(session, tenant)
    created: list[str] = []
    for document, markdown in read_examples(directory):
        if await service.specs.get_live_by_slug(document.slug) is None:
            await service.create(markdown)
            created.append(document.slug)
    return created
