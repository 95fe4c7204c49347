"""Approval policy: which action kinds wait in AWAITING_APPROVAL before they run, per organization.

Default: write-risk kinds need approval, read-risk kinds do not. An admin may override any kind either way; the
overrides live in ``organizations.settings["action_approval"]`` as ``{kind_slug: bool}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.models import ApprovalPolicyPublic, KindApprovalPublic
from virtuousai.errors import NotFound
from virtuousai.orgs.tables import Organization
from virtuousai.runtime.creation import requires_approval
from virtuousai.runtime.kinds import KindRegistry, UnknownKind
from virtuousai.store.tenant import TenantContext

POLICY_KEY = "action_approval"


def overrides_of(org_settings: Mapping[str, Any]) -> dict[str, bool]:
    raw = org_settings.get(POLICY_KEY)
    if not isinstance(raw, dict):
        return {}
    return {slug: value for slug, value in raw.items() if isinstance(value, bool)}


class ApprovalPolicyService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, registry: KindRegistry) -> None:
        self.session = session
        self.tenant = tenant
        self.registry = registry

    async def overrides(self) -> dict[str, bool]:
        org = await self.session.get(Organization, self.tenant.tenant_id)
        return overrides_of(org.settings) if org is not None else {}

    async def describe(self) -> ApprovalPolicyPublic:
        overrides = await self.overrides()
        return ApprovalPolicyPublic(
            kinds=[
                KindApprovalPublic(
                    kind=kind.slug,
                    risk=kind.risk,
                    requires_approval=requires_approval(kind, overrides),
                    source="organization" if kind.slug in overrides else "default",
                )
                for kind in self.registry.all()
            ]
        )

    async def set_kind(self, slug: str, required: bool | None) -> ApprovalPolicyPublic:
        """Override one kind (``None`` returns it to the default)."""
        try:
            self.registry.get(slug)
        except UnknownKind:
            raise NotFound(f"no action kind {slug!r}") from None
        org = await self.session.get(Organization, self.tenant.tenant_id, with_for_update=True)
        if org is None:
            raise NotFound("organization not found")
        overrides = overrides_of(org.settings)
        if required is None:
            overrides.pop(slug, None)
        else:
            overrides[slug] = required
        # A new dict, so the ORM sees the JSON column change.
        org.settings = {**org.settings, POLICY_KEY: overrides}
        await self.session.commit()
        return await self.describe()
