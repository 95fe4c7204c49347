"""The retry decision is a pure function: exponential, capped, jittered, and it gives up at max_attempts."""

from __future__ import annotations

import random
from datetime import timedelta

from virtuousai.runtime.kinds import RetryPolicy
from virtuousai.runtime.retry import backoff_delay_s, decide_retry
from virtuousai.timeutil import utcnow


def test_delays_double_per_attempt_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(backoff_s=1.0, backoff_max_s=10.0, jitter=0.0)
    assert [backoff_delay_s(n, policy) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_spreads_delays_within_the_fraction() -> None:
    policy = RetryPolicy(backoff_s=2.0, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff_delay_s(1, policy, rng) for _ in range(200)]
    assert all(1.5 <= d <= 2.5 for d in delays)
    assert max(delays) - min(delays) > 0.5, "jitter must actually spread the delays"


def test_retries_until_max_attempts_then_gives_up() -> None:
    now = utcnow()
    policy = RetryPolicy(backoff_s=3.0, jitter=0.0)
    first = decide_retry(attempt=1, max_attempts=3, policy=policy, now=now)
    assert first.retry and first.available_at == now + timedelta(seconds=3)
    second = decide_retry(attempt=2, max_attempts=3, policy=policy, now=now)
    assert second.retry and second.available_at == now + timedelta(seconds=6)
    last = decide_retry(attempt=3, max_attempts=3, policy=policy, now=now)
    assert not last.retry and last.available_at is None
