"""Test-only action kinds with a side effect on an "external system", for the multi-process reliability tests.

The external system is two tables in the test's PostgreSQL database (created by ``create_effect_tables``; they are
not part of our schema). It honours idempotency keys, as the systems our write kinds call should:

- ``test_effects``: the committed effects, one row per idempotency key. Applying an effect again with the same key
  changes nothing (``ON CONFLICT DO NOTHING``) and is reported as a duplicate.
- ``test_effect_attempts``: a log of what every execution did (``started``, then ``applied`` or ``duplicate``),
  written in the same transaction as the effect, so the log and the effects always agree.

Why an idempotency key and not the lease token: fencing cannot make an outside effect happen once. A worker that
commits its effect and dies before recording COMPLETED leaves a run that must execute again (at-least-once); only a
key that is the same on every attempt (``ctx.idempotency_key``, the run id) lets the system recognise the repeat.
The tests show both halves: repeats happened (``duplicate`` rows) and each run's effect is committed once.

The kinds reach the database named by ``VAI_DATABASE_URL`` (worker subprocesses only). Listed in
``VAI_KIND_MODULES=tests.runtime.kinds_effects`` for those workers.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from virtuousai.config import Settings
from virtuousai.errors import NotFound
from virtuousai.net.errors import BlockedDestination
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind
from virtuousai.store.drivers.postgres import asyncpg_dsn

EFFECT_TABLES = """
CREATE TABLE IF NOT EXISTS test_effects (
    idempotency_key text PRIMARY KEY,
    run_id text NOT NULL,
    attempt int NOT NULL,
    worker_pid int NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS test_effect_attempts (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    attempt int NOT NULL,
    worker_pid int NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('started', 'applied', 'duplicate')),
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

LOG_ATTEMPT = "INSERT INTO test_effect_attempts (run_id, attempt, worker_pid, outcome) VALUES ($1, $2, $3, $4)"
APPLY_EFFECT = """
INSERT INTO test_effects (idempotency_key, run_id, attempt, worker_pid) VALUES ($1, $2, $3, $4)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING 1
"""


async def create_effect_tables(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(EFFECT_TABLES)
    finally:
        await conn.close()


@dataclass(frozen=True)
class EffectRecord:
    idempotency_key: str
    run_id: str
    attempt: int
    worker_pid: int


@dataclass(frozen=True)
class AttemptRecord:
    run_id: str
    attempt: int
    worker_pid: int
    outcome: str  # started | applied | duplicate


async def read_effects(dsn: str) -> tuple[list[EffectRecord], list[AttemptRecord]]:
    """Everything the external system saw: committed effects, and every execution's log in order."""
    conn = await asyncpg.connect(dsn)
    try:
        effects = await conn.fetch("SELECT idempotency_key, run_id, attempt, worker_pid FROM test_effects")
        attempts = await conn.fetch("SELECT run_id, attempt, worker_pid, outcome FROM test_effect_attempts ORDER BY id")
    finally:
        await conn.close()
    return [EffectRecord(*row) for row in effects], [AttemptRecord(*row) for row in attempts]


def _dsn() -> str:
    import sqlalchemy as sa

    return asyncpg_dsn(sa.make_url(Settings().resolved_database_url))


# One small pool per event loop (a worker process has one; the blocking kind opens its own connection instead).
_pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}


async def _pool() -> asyncpg.Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = await asyncpg.create_pool(_dsn(), min_size=1, max_size=4)
    return pool


async def _log_start(conn: Any, ctx: ActionContext) -> None:
    await conn.execute(LOG_ATTEMPT, ctx.run_id, ctx.attempt, os.getpid(), "started")


async def _apply_effect(conn: Any, ctx: ActionContext) -> str:
    """Apply the run's effect under its idempotency key; log what happened in the same transaction."""
    async with conn.transaction():
        applied = await conn.fetchval(APPLY_EFFECT, ctx.idempotency_key, ctx.run_id, ctx.attempt, os.getpid())
        outcome = "applied" if applied else "duplicate"
        await conn.execute(LOG_ATTEMPT, ctx.run_id, ctx.attempt, os.getpid(), outcome)
    return outcome


class EffectInput(BaseModel):
    work_s: float = Field(default=0.1, ge=0, le=30, description="Half before the effect, half after.")
    hold_first_attempt_s: float = Field(default=0, ge=0, le=30, description="Extra wait before attempt 1's effect.")
    linger_first_attempt_s: float = Field(default=0, ge=0, le=30, description="Extra wait after attempt 1's effect.")


class EffectOutput(BaseModel):
    effect: str  # applied | duplicate
    attempt: int
    worker_pid: int


# Recovery must not wait on a long backoff (the crash test measures it); a run may be orphaned more than once.
EFFECT_RETRY = RetryPolicy(max_attempts=10, backoff_s=0.05, backoff_max_s=0.2)


@action_kind(
    "test_effect",
    risk="read",
    description="Test only: applies one idempotent effect per run in the middle of its work.",
    timeout_s=60,
    retry=EFFECT_RETRY,
)
async def effect(ctx: ActionContext, inputs: EffectInput) -> EffectOutput:
    pool = await _pool()
    async with pool.acquire() as conn:
        await _log_start(conn, ctx)
    hold = inputs.hold_first_attempt_s if ctx.attempt == 1 else 0.0
    await ctx.cancel.sleep(inputs.work_s / 2 + hold)
    async with pool.acquire() as conn:
        outcome = await _apply_effect(conn, ctx)
    linger = inputs.linger_first_attempt_s if ctx.attempt == 1 else 0.0
    await ctx.cancel.sleep(inputs.work_s / 2 + linger)
    return EffectOutput(effect=outcome, attempt=ctx.attempt, worker_pid=os.getpid())


@action_kind(
    "test_effect_blocking",
    risk="read",
    description="Test only: like test_effect, but a sync kind in a thread that nothing can interrupt.",
    timeout_s=60,
    retry=EFFECT_RETRY,
)
def effect_blocking(ctx: ActionContext, inputs: EffectInput) -> EffectOutput:
    async def start() -> None:
        conn = await asyncpg.connect(_dsn())
        try:
            await _log_start(conn, ctx)
        finally:
            await conn.close()

    async def apply() -> str:
        conn = await asyncpg.connect(_dsn())
        try:
            return await _apply_effect(conn, ctx)
        finally:
            await conn.close()

    asyncio.run(start())
    hold = inputs.hold_first_attempt_s if ctx.attempt == 1 else 0.0
    time.sleep(inputs.work_s / 2 + hold)  # never looks at ctx.cancel: a paused-then-resumed worker carries on
    outcome = asyncio.run(apply())
    linger = inputs.linger_first_attempt_s if ctx.attempt == 1 else 0.0
    time.sleep(inputs.work_s / 2 + linger)
    return EffectOutput(effect=outcome, attempt=ctx.attempt, worker_pid=os.getpid())


class BlockedInput(BaseModel):
    pass


class BlockedOutput(BaseModel):
    pass


@action_kind(
    "test_blocked_destination",
    risk="read",
    description="Test only: raises the outbound client's BlockedDestination, an error that says retrying is futile.",
    timeout_s=30,
    retry=RetryPolicy(max_attempts=3, backoff_s=0.05),
)
async def blocked_destination(ctx: ActionContext, inputs: BlockedInput) -> BlockedOutput:
    raise BlockedDestination("169.254.169.254 is not a public address")


@action_kind(
    "test_not_found",
    risk="read",
    description="Test only: raises NotFound, as a kind does when its connection is gone (ctx.connection).",
    timeout_s=30,
    retry=RetryPolicy(max_attempts=3, backoff_s=0.05),
)
async def not_found(ctx: ActionContext, inputs: BlockedInput) -> BlockedOutput:
    raise NotFound("connection 'slug:gone' not found")
