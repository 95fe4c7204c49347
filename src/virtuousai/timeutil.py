from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. The only clock our code reads for stored timestamps."""
    return datetime.now(UTC)
