"""The clock and the one text form of a timestamp.

Every surface writes timestamps with ``isoformat``: REST bodies (models declare their fields as ``Timestamp``),
SSE payloads and the CLI's ``--json`` (through ``json_default``), and JSON log lines. The form is ISO 8601 in UTC
with ``T`` and ``Z``: ``2026-12-01T19:09:40.571133Z`` (no fraction when it is zero), which is also what Pydantic
writes for a UTC datetime, so a value read back from any surface compares equal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import PlainSerializer, WithJsonSchema


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. The only clock our code reads for stored timestamps."""
    return datetime.now(UTC)


def isoformat(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 with ``T`` and ``Z``; a naive datetime is refused (its zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r} has no timezone; timestamps are timezone-aware UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def json_default(value: Any) -> Any:
    """``json.dumps(payload, default=json_default)``: timestamps as ``isoformat``; dates, decimals and enums as
    their text; anything else as ``str``."""
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


# A datetime field of an API model: validated as a datetime, written with ``isoformat``.
Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
