"""Cursor pagination: ``?limit=&cursor=`` in, ``{items, next_cursor}`` out.

Ids are time-ordered and unique, so the cursor is simply the last id of the page, newest first. It is opaque to
clients (base64url) so we can change what it holds later.
"""

from __future__ import annotations

import base64
import binascii
import json
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


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise InvalidCursor("cursor is not one this API issued")
    return str(data["id"])


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
