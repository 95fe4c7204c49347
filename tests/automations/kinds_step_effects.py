"""A test-only action kind with one side effect per automation step (per item for ``for_each``), for the crash test.

The "external system" is two tables in the test's PostgreSQL database (not part of our schema):

- ``step_effects``: the committed effects, keyed by ``(automation_run_id, step_key, item_index)``, each naming the
  ActionRun that applied it. Applying again is idempotent by the ActionRun id (``ctx.idempotency_key``): the same
  ActionRun's repeat changes nothing (``duplicate``); a *different* ActionRun for the same step item would be the
  engine creating a step twice, and is recorded as ``foreign`` so the test can see it.
- ``step_effect_attempts``: what every execution did (``started``, then ``applied``, ``duplicate`` or ``foreign``),
  written in the same transaction as the effect.

Workers load it with ``VAI_KIND_MODULES=tests.automations.kinds_step_effects`` and reach the database named by
``VAI_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import asyncpg
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from virtuousai.config import Settings
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind
from virtuousai.store.drivers.postgres import asyncpg_dsn

EFFECT_TABLES = """
CREATE TABLE IF NOT EXISTS step_effects (
    automation_run_id text NOT NULL,
    step_key text NOT NULL,
    item_index int NOT NULL,
    action_run_id text NOT NULL,
    attempt int NOT NULL,
    worker_pid int NOT NULL,
    PRIMARY KEY (automation_run_id, step_key, item_index)
);
CREATE TABLE IF NOT EXISTS step_effect_attempts (
    id bigserial PRIMARY KEY,
    automation_run_id text NOT NULL,
    step_key text NOT NULL,
    item_index int NOT NULL,
    action_run_id text NOT NULL,
    attempt int NOT NULL,
    worker_pid int NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('started', 'applied', 'duplicate', 'foreign'))
);
"""
APPLY = """
INSERT INTO step_effects (automation_run_id, step_key, item_index, action_run_id, attempt, worker_pid)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1
"""
OWNER = "SELECT action_run_id FROM step_effects WHERE automation_run_id = $1 AND step_key = $2 AND item_index = $3"
LOG = """
INSERT INTO step_effect_attempts (automation_run_id, step_key, item_index, action_run_id, attempt, worker_pid, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def create_effect_tables(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(EFFECT_TABLES)
    finally:
        await conn.close()


@dataclass(frozen=True)
class StepEffect:
    automation_run_id: str
    step_key: str
    item_index: int
    action_run_id: str


@dataclass(frozen=True)
class StepAttempt:
    step_key: str
    item_index: int
    action_run_id: str
    attempt: int
    outcome: str


async def read_step_effects(dsn: str) -> tuple[list[StepEffect], list[StepAttempt]]:
    conn = await asyncpg.connect(dsn)
    try:
        effects = await conn.fetch(
            "SELECT automation_run_id, step_key, item_index, action_run_id FROM step_effects ORDER BY 1, 2, 3"
        )
        attempts = await conn.fetch(
            "SELECT step_key, item_index, action_run_id, attempt, outcome FROM step_effect_attempts ORDER BY id"
        )
    finally:
        await conn.close()
    return [StepEffect(*row) for row in effects], [StepAttempt(*row) for row in attempts]


class StepEffectInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    automation_run_id: str
    step: str
    index: int = 0
    work_s: float = Field(default=0.2, ge=0, le=30, description="Half before the effect, half after.")


class StepEffectOutput(BaseModel):
    step: str
    index: int
    effect: str
    attempt: int


_pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}


async def _pool() -> asyncpg.Pool:
    loop = asyncio.get_running_loop()
    if loop not in _pools:
        dsn = asyncpg_dsn(sa.make_url(Settings().resolved_database_url))
        _pools[loop] = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    return _pools[loop]


@action_kind(
    "test_step_effect",
    risk="read",
    description="Test only: applies one effect per automation step item, idempotent by the ActionRun id.",
    timeout_s=60,
    retry=RetryPolicy(max_attempts=10, backoff_s=0.05, backoff_max_s=0.2),
)
async def step_effect(ctx: ActionContext, inputs: StepEffectInput) -> StepEffectOutput:
    pool = await _pool()
    key = (inputs.automation_run_id, inputs.step, inputs.index, ctx.idempotency_key, ctx.attempt, os.getpid())
    async with pool.acquire() as conn:
        await conn.execute(LOG, *key, "started")
    await ctx.cancel.sleep(inputs.work_s / 2)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(APPLY, *key):
            outcome = "applied"
        else:
            owner = await conn.fetchval(OWNER, inputs.automation_run_id, inputs.step, inputs.index)
            outcome = "duplicate" if owner == ctx.idempotency_key else "foreign"
        await conn.execute(LOG, *key, outcome)
    await ctx.cancel.sleep(inputs.work_s / 2)
    return StepEffectOutput(step=inputs.step, index=inputs.index, effect=outcome, attempt=ctx.attempt)
