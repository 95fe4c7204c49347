from __future__ import annotations

import sqlalchemy as sa

from virtuousai.store.tenant import TenantRepository
from virtuousai.templates.tables import Template, TemplateVersion


class TemplateRepository(TenantRepository[Template]):
    model = Template

    async def get_by_slug(self, slug: str) -> Template | None:
        result: Template | None = await self.session.scalar(self.base_query().where(Template.slug == slug))
        return result


class TemplateVersionRepository(TenantRepository[TemplateVersion]):
    model = TemplateVersion

    def of_template(self, template_id: str) -> sa.Select[tuple[TemplateVersion]]:
        return self.base_query().where(TemplateVersion.template_id == template_id)

    async def get_version(self, template_id: str, version: int) -> TemplateVersion | None:
        result: TemplateVersion | None = await self.session.scalar(
            self.of_template(template_id).where(TemplateVersion.version == version)
        )
        return result
