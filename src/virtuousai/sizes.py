"""Sizes written as DuckDB writes them (``1GB``, ``512MB``, ``2GiB``): decimal units are powers of 1000, binary ones
of 1024, as in DuckDB's ``memory_limit``. Settings check theirs with this; the query processes size their address
space from it."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``"1GB"`` → 1,000,000,000; ``"1GiB"`` → 1,073,741,824); ``ValueError`` if it is none."""
    match = _SIZE.match(text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as 512MB, 1GB or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2)])
