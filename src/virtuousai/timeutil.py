"""The clock and the one text form of a timestamp.

Every surface writes timestamps with ``isoformat``: REST bodies (models declare their fields as ``Timestamp``),
SSE payloads and the CLI's ``--json`` (through ``json_default``), and JSON log lines. The form is ISO 8601 in UTC
with ``T`` and ``Z``: ``2026-12-01T19:09:40.571133Z`` (no fraction when it is zero), which is also what Pydantic
writes for a UTC datetime, so a value read back from any surface compares equal.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema


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


# RFC 3339 date-time, what `format: date-time` promises (an offset may be left out; the services require one).
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:?\d\d)?$")


def date_time_text(value: Any) -> Any:
    """Refuse what Pydantic would read as a datetime but the document does not allow: a number (``0.5``, read as
    seconds since 1970) or a date without a time."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TIME.match(value):
        return value
    raise ValueError("must be an ISO 8601 date-time, e.g. 2030-01-01T00:00:00Z")


def representable_in_utc(value: datetime) -> datetime:
    """Refuse a timestamp that leaves datetime's range when moved to UTC (``0001-01-01T00:00+15:00`` is a day
    before year 1): storage and comparisons happen in UTC, where it would raise OverflowError, a 500."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is outside the range of timestamps once moved to UTC (years 1 to 9999)") from None
    return value


# A datetime of the API (a model field, a query parameter): validated as a datetime that stays representable in
# UTC, written with ``isoformat``.
Timestamp = Annotated[
    datetime,
    BeforeValidator(date_time_text),
    AfterValidator(representable_in_utc),
    PlainSerializer(isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
