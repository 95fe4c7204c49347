"""Table descriptions: what the organization wrote about a lake table and its columns (``explain_schema`` gives
them to the model next to what the data says). One row per table, replaced whole by each ``PUT``."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from virtuousai.data.lake import TableRef, TenantLake
from virtuousai.data.models import TableDescriptionIn, TableDescriptionPublic
from virtuousai.data.tables import TableDescription
from virtuousai.errors import FieldError, NotFound, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.store.tenant import TenantRepository
from virtuousai.timeutil import utcnow

MAX_COLUMN_DESCRIPTION = 2000


class TableDescriptions(TenantRepository[TableDescription]):
    model = TableDescription

    async def of(self, names: Iterable[str]) -> dict[str, TableDescription]:
        wanted = list(names)
        if not wanted:
            return {}
        stmt = sa.select(TableDescription).where(
            TableDescription.tenant_id == self.tenant_id, TableDescription.table_name.in_(wanted)
        )
        return {row.table_name: row for row in await self.session.scalars(stmt)}

    async def describe(self, lake: TenantLake, ref: TableRef) -> TableDescriptionPublic:
        manifest = lake.manifest(ref)
        if manifest is None:
            raise NotFound(f"no table {str(ref)!r} in this organization's lake")
        row = (await self.of([str(ref)])).get(str(ref))
        return _public(ref, row)

    async def put(
        self, lake: TenantLake, ref: TableRef, body: TableDescriptionIn, *, user_id: str | None
    ) -> TableDescriptionPublic:
        """Replace the table's description; a column the table does not have is a 422 naming it."""
        manifest = lake.manifest(ref)
        if manifest is None:
            raise NotFound(f"no table {str(ref)!r} in this organization's lake")
        known = {column.name for column in manifest.columns}
        errors = [
            FieldError(["body", "columns", name], f"{ref!s} has no column {name!r}", "unknown_column")
            for name in body.columns
            if name not in known
        ] + [
            FieldError(["body", "columns", name], f"at most {MAX_COLUMN_DESCRIPTION} characters", "string_too_long")
            for name, text in body.columns.items()
            if len(text) > MAX_COLUMN_DESCRIPTION
        ]
        if errors:
            raise ValidationFailed("the description does not fit the table", errors=errors)
        row = (await self.of([str(ref)])).get(str(ref))
        if row is None:
            row = self.add(
                TableDescription(
                    id=new_id("tdesc"), table_name=str(ref), description="", columns={}, updated_at=utcnow()
                )
            )
        row.description, row.columns = body.table, dict(body.columns)
        row.updated_at, row.updated_by = utcnow(), user_id
        await self.session.flush()
        return _public(ref, row)


def _public(ref: TableRef, row: TableDescription | None) -> TableDescriptionPublic:
    return TableDescriptionPublic(
        name=str(ref),
        table=row.description if row else "",
        columns=dict(row.columns) if row else {},
        updated_at=row.updated_at if row else None,
    )
