"""Time-ordered, prefixed identifiers: ``org_01JD3Q…`` (prefix, underscore, 26-char ULID in Crockford base32).

Sorting ids sorts by creation time (millisecond precision), so ids double as pagination cursors and keep logs,
URLs and LLM tool arguments readable. Within one process ids are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0

PREFIXES = {
    "organization": "org",
    "user": "usr",
    "membership": "mem",
    "api_key": "key",
}

# Parent runs: the prefix of a child ActionRun's ``parent_run_id`` says which kind of run it belongs to.
AUTOMATION_RUN_PREFIX = "arun"
AGENT_RUN_PREFIX = "agrun"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id ``<prefix>_<ulid>``; monotonic within this process."""
    global _last_ms, _last_rand
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            # Same millisecond (or clock went back): bump the random part so order is kept.
            now_ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = now_ms, rand
    return f"{prefix}_{_encode(now_ms, 10)}{_encode(rand, 16)}"


def has_prefix(value: str | None, prefix: str) -> bool:
    return value is not None and value.startswith(prefix + "_") and len(value) == len(prefix) + 27


def prefix_of(value: str) -> str:
    """``arun`` of ``arun_01J…``."""
    return value.partition("_")[0]
