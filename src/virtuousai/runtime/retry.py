"""The retry decision, as a pure function shared by the failure path (executor) and the lease-expiry path
(watchdog): given the attempt that just ended, run again (and when), or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from virtuousai.runtime.kinds import RetryPolicy


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    available_at: datetime | None = None  # when the next attempt may start (None when giving up)
    delay_s: float = 0.0


def backoff_delay_s(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential: ``backoff_s * 2**(attempt-1)``, capped at ``backoff_max_s``, then ± ``jitter`` of itself, so
    runs that failed together do not all come back in the same instant."""
    base = min(policy.backoff_s * (2 ** max(attempt - 1, 0)), policy.backoff_max_s)
    spread = base * policy.jitter
    jittered: float = base + (rng or random).uniform(-spread, spread)
    return max(0.0, jittered)


def decide_retry(
    *,
    attempt: int,
    max_attempts: int,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random | None = None,
) -> RetryDecision:
    """``attempt`` is the number of the attempt that just failed (1 for the first)."""
    if attempt >= max_attempts:
        return RetryDecision(retry=False)
    delay = backoff_delay_s(attempt, policy, rng)
    return RetryDecision(retry=True, available_at=now + timedelta(seconds=delay), delay_s=delay)
