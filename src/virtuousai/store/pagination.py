"""Cursor pagination: ``?limit=&cursor=`` in, ``{items, next_cursor}`` out.

Ids are time-ordered and unique, so the cursor is simply the last id of the page, newest first, as Stripe's
``starting_after`` is. Any string of an id's shape is a valid position (the page after it), so the OpenAPI document
can say exactly what the server accepts (``CURSOR_PATTERN``), and a cursor says nothing its page did not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class InvalidCursor(ValueError):
    pass


# An id: a lower-case kind prefix and a ULID (ids.py).
CURSOR_PATTERN = r"^[a-z]{1,10}_[0-9A-HJKMNP-TV-Z]{26}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(last_id: str) -> str:
    return last_id


def decode_cursor(cursor: str) -> str:
    if not _CURSOR.match(cursor):
        raise InvalidCursor("cursor is not one this API issued (the `next_cursor` of a page)")
    return cursor


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class PageResult(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


async def paginate(
    session: AsyncSession, stmt: sa.Select[Any], id_column: sa.ColumnElement[str], page: PageRequest
) -> PageResult[Any]:
    """Run ``stmt`` (already tenant-filtered) newest first, one page at a time."""
    if page.cursor is not None:
        stmt = stmt.where(id_column < decode_cursor(page.cursor))
    rows = (await session.scalars(stmt.order_by(id_column.desc()).limit(page.limit + 1))).all()
    items = rows[: page.limit]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > page.limit and items else None
    return PageResult(items=items, next_cursor=next_cursor)
