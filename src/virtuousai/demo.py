"""The demo organization that ``make run`` (``vai serve --demo``) creates on first start, and its content.

Content is added by ``seed_demo_content`` on every start, idempotently, so a demo organization made by an older
version gains what newer versions add.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.orgs.repository import AccessLookup
from virtuousai.orgs.service import create_organization
from virtuousai.store.tenant import TenantContext

DEMO_ORG_NAME = "Demo organization"
DEMO_OWNER_EMAIL = "demo@virtuousai.local"


@dataclass(frozen=True)
class DemoOrganization:
    org_id: str
    api_key: str | None  # only on the start that created it
    key_file: Path
    created: bool


async def ensure_demo_organization(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> DemoOrganization:
    key_file = settings.data_dir / "demo-api-key"
    async with sessions() as session:
        existing = await AccessLookup(session).organization_by_name(DEMO_ORG_NAME)
        if existing is not None:
            await seed_demo_content(session, TenantContext(tenant_id=existing.id), settings)
            return DemoOrganization(org_id=existing.id, api_key=None, key_file=key_file, created=False)
        created = await create_organization(session, DEMO_ORG_NAME, DEMO_OWNER_EMAIL, owner_name="Demo Owner")
        tenant = TenantContext(tenant_id=created.organization.id, user_id=created.owner.id, role="owner")
        await seed_demo_content(session, tenant, settings)
    # A local convenience for the embedded demo only: the key is printed once and kept next to the SQLite file
    # with the same protection as the master key, so a second `make run` can point at it.
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(created.key.plaintext + "\n")
    return DemoOrganization(
        org_id=created.organization.id, api_key=created.key.plaintext, key_file=key_file, created=True
    )


async def seed_demo_content(session: AsyncSession, tenant: TenantContext, settings: Settings) -> None:
    """The demo's agents (examples/agents) and its offline ETL: a generated shop database, the shop and warehouse
    connections, and the `demo-shop-etl` automation; once that ETL has published its gold table, the "Demo shop"
    flashboard over it (a start after the first ETL run creates it). Each step skips what already exists."""
    from virtuousai.agents.examples import load_example_agents
    from virtuousai.flashboards.demo import seed_demo_flashboard

    await load_example_agents(session, tenant)
    await _seed_demo_etl(session, tenant, settings)
    await seed_demo_flashboard(session, tenant, settings)


async def _seed_demo_etl(session: AsyncSession, tenant: TenantContext, settings: Settings) -> None:
    from virtuousai.actions.policy import ApprovalPolicyService
    from virtuousai.actions.registry import default_registry
    from virtuousai.automations.repository import AutomationRepository
    from virtuousai.automations.service import AutomationService
    from virtuousai.automations.spec import AutomationSpec
    from virtuousai.connections.models import ConnectionCreate
    from virtuousai.connections.repository import ConnectionRepository
    from virtuousai.connections.service import ConnectionService
    from virtuousai.crypto.providers import build_key_provider
    from virtuousai.data.demo_data import generate_shop_database
    from virtuousai.data.demo_etl import DEMO_ETL, demo_connections, shop_path

    shop = shop_path(settings.data_dir)
    if not shop.exists():
        # Generated once (a few seconds): seeded, so every demo has the same few hundred thousand rows.
        await asyncio.to_thread(generate_shop_database, shop)
    connections = ConnectionService(session, tenant, build_key_provider(settings))
    for body in demo_connections(settings.data_dir):
        if await ConnectionRepository(session, tenant).get_by_slug(body["slug"]) is None:
            await connections.create(ConnectionCreate.model_validate(body))
    if await AutomationRepository(session, tenant).by_ref(f"slug:{DEMO_ETL['slug']}") is None:
        await AutomationService(session, tenant).create(AutomationSpec.model_validate(DEMO_ETL))
    # `load` is write-risk, so by default it waits for a human. The demo's only destination is its own local
    # warehouse file, so the demo organization lets it through (unless someone set a policy for it already).
    policy = ApprovalPolicyService(session, tenant, default_registry())
    if "load" not in await policy.overrides():
        await policy.set_kind("load", False)
