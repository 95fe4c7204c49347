"""``VerifiedKeys``: the API keys this process verified a moment ago, so the next request with one reads nothing.

Authenticating reads the key with its membership, user and organization: one SELECT, but also a pooled connection, a
transaction and (on SQLite) several hops through aiosqlite's thread, 1 to 3 ms: more than the rest of a small request
(``docs/api.md`` measures it). A key that passed is kept here with the ``Principal`` it resolved to, under the
SHA-256 of the whole key, for ``ttl_s`` seconds (``VAI_AUTH_CACHE_TTL_S``; 0 turns the cache off). It is the usual
API-gateway arrangement (a short-lived credential cache, emptied when access changes):

- A kept key still meets every check that depends on the clock: past its ``expires_at`` it goes back to the
  database (which answers 401 ``expired``), and so does a key whose ``last_used_at`` is due its next write, so that
  hint is as exact as without the cache.
- Only successes are kept. An unknown, revoked or expired key is looked up on every request, as before.
- A change of access — today, revoking a key — publishes an ``access`` wake-up with its commit, and every process
  that hears it empties its cache: the process that made the change at its commit, the others when PostgreSQL's
  ``NOTIFY`` reaches them. The wake-up listener also announces ``access`` when it (re)connects, so one missed while
  it was down costs nothing.
- On SQLite wake-ups do not cross processes: a key revoked with ``vai key revoke`` while ``vai serve`` runs on the
  same file keeps working there for at most ``ttl_s`` (a revocation through the API is seen at once).

The kept ``Principal`` (and its detached ``User``, ``Organization`` and ``ApiKey``) is shared by the requests that
use the key: read it, never modify it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from virtuousai.orgs.service import LAST_USED_RESOLUTION, Principal
from virtuousai.store.drivers import Wakeup
from virtuousai.timeutil import utcnow


class VerifiedKeys:
    def __init__(
        self,
        ttl_s: float,
        *,
        max_keys: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        # key hash → (kept until, on the monotonic clock; the principal). Oldest first: the first to go when full.
        self._kept: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        # Counts the clears: a verification that began before one must not be kept after it (``keep``).
        self.generation = 0

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key_hash: str) -> Principal | None:
        """The principal ``key_hash`` was verified as, if that is recent and nothing the clock decides has changed;
        otherwise None (and the entry is dropped): the caller authenticates against the database."""
        entry = self._kept.get(key_hash)
        if entry is None:
            return None
        kept_until, principal = entry
        key, now = principal.api_key, self._wall_clock()
        if (
            self._monotonic() >= kept_until
            or (key.expires_at is not None and key.expires_at <= now)
            or key.last_used_at is None
            or now - key.last_used_at >= LAST_USED_RESOLUTION
        ):
            del self._kept[key_hash]
            return None
        return principal

    def keep(self, key_hash: str, principal: Principal, *, verified_in: int) -> None:
        """Remember a principal the database has just verified; ``verified_in`` is the ``generation`` read before
        the lookup began. If access changed meanwhile (a revocation committed while the key was being read), the
        principal may be from before it and is not kept. Nothing is kept when ``ttl_s`` is 0."""
        if self.ttl_s <= 0 or verified_in != self.generation:
            return
        self._kept.pop(key_hash, None)
        self._kept[key_hash] = (self._monotonic() + self.ttl_s, principal)
        while len(self._kept) > self.max_keys:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self.generation += 1
        self._kept.clear()

    def on_wakeup(self, wakeup: Wakeup) -> None:
        """A ``WakeupHub`` subscriber: an ``access`` wake-up (some key, membership or user changed) empties the cache.
        Access changes are rare; forgetting every key costs each caller one database read."""
        if wakeup.topic == "access":
            self.clear()
