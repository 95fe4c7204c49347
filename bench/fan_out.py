"""A fan-out's cost against the same number of independent runs, at 1k, 10k and 100k items, on both databases.

For each database (SQLite, the embedded default; PostgreSQL) and each size N, one process like ``vai serve`` (the
app with one in-process worker of concurrency 8) executes, in alternating order:

- N independent no-op ActionRuns (``echo``), created through the one builder in batches of 1,000;
- one automation run whose single step is a ``for_each`` over N items of the same kind.

Reported per item, with the ratio (target: at most 2x at every size), and the process's resident memory after each
fan-out (``VmRSS``; target: flat in the item count). Knobs: ``VAI_BENCH_FAN_OUT_SIZES`` (default ``1000,10000,
100000``), ``VAI_BENCH_FAN_OUT_DATABASES`` (default ``sqlite,postgres``), ``VAI_BENCH_POSTGRES_URL``.

    .venv/bin/python -m bench fan_out
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

ADMIN_URL = os.environ.get("VAI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SIZES = [int(n) for n in os.environ.get("VAI_BENCH_FAN_OUT_SIZES", "1000,10000,100000").split(",")]
DATABASES = [d.strip() for d in os.environ.get("VAI_BENCH_FAN_OUT_DATABASES", "sqlite,postgres").split(",")]
BATCH = 1000


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def measure(database: str, tmp: Path) -> list[dict[str, Any]]:
    from virtuousai.actions.policy import ApprovalPolicyService
    from virtuousai.app import create_app
    from virtuousai.automations.runs import AutomationRunService
    from virtuousai.automations.service import AutomationService
    from virtuousai.automations.spec import AutomationSpec
    from virtuousai.config import Settings
    from virtuousai.orgs.service import create_organization
    from virtuousai.runtime.creation import RunRequest, create_runs
    from virtuousai.store import migrate
    from virtuousai.store.engine import make_engine
    from virtuousai.store.tenant import TenantContext

    name = f"vai_bench_fan_{secrets.token_hex(4)}"
    if database == "postgres":
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = ADMIN_URL.rpartition("/")[0] + f"/{name}"
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    settings = Settings(
        database_url=url,
        data_dir=tmp / "var",
        worker_concurrency=8,
        automation_max_fan_out=max(SIZES),
        log_level="WARNING",
    )
    engine = make_engine(settings.resolved_database_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    results: list[dict[str, Any]] = []
    app = create_app(settings, workers=1)
    try:
        async with app.router.lifespan_context(app):
            sessions = app.state.sessions
            async with sessions() as session:
                org = await create_organization(session, "Bench", "bench@example.com")
            tenant = TenantContext(tenant_id=org.organization.id, user_id=org.owner.id)

            async def pending() -> int:
                async with sessions() as session:
                    from sqlalchemy import func, select

                    from virtuousai.runtime.tables import ActionRun

                    count = await session.scalar(
                        select(func.count()).where(ActionRun.status.in_(["PENDING", "RUNNING"]))
                    )
                    await session.rollback()
                    return int(count or 0)

            async def independent(n: int) -> float:
                started = time.perf_counter()
                for first in range(0, n, BATCH):
                    async with sessions() as session:
                        overrides = await ApprovalPolicyService(session, tenant, app.state.registry).overrides()
                        requests = [RunRequest("echo", {"i": i}) for i in range(first, min(n, first + BATCH))]
                        await create_runs(
                            session,
                            app.state.registry,
                            requests,
                            tenant_id=tenant.tenant_id,
                            approval_overrides=overrides,
                        )
                        await session.commit()
                while await pending():
                    await asyncio.sleep(0.05)
                return time.perf_counter() - started

            async def fan_out(n: int) -> float:
                slug = f"fan-{n}"
                spec = {
                    "name": slug,
                    "slug": slug,
                    "steps": [
                        {"key": "fan", "action": "echo", "for_each": list(range(n)), "inputs": {"i": "${{ item }}"}}
                    ],
                }
                async with sessions() as session:
                    await AutomationService(session, tenant).create(AutomationSpec.model_validate(spec))
                started = time.perf_counter()
                async with sessions() as session:
                    run = await AutomationRunService(session, tenant, app.state.orchestrator).start(f"slug:{slug}", {})
                while True:
                    async with sessions() as session:
                        status = (
                            await AutomationRunService(session, tenant, app.state.orchestrator).get(run.id)
                        ).status
                    if status.is_terminal:
                        break
                    await asyncio.sleep(0.05)
                if status.value != "COMPLETED":
                    raise RuntimeError(f"bench: fan-out of {n} ended {status.value}")
                return time.perf_counter() - started

            for n in SIZES:
                ind = await independent(n)
                fan = await fan_out(n)
                results.append(
                    {"database": database, "items": n, "independent_s": ind, "fan_out_s": fan, "rss_mb": rss_mb()}
                )
    finally:
        if database == "postgres":
            admin = await asyncpg.connect(ADMIN_URL)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    return results


def main() -> None:
    from virtuousai import eventloop

    rows: list[dict[str, Any]] = []
    for database in DATABASES:
        with tempfile.TemporaryDirectory(prefix="vai-bench-fan-") as tmp:
            rows += eventloop.run(measure(database, Path(tmp)))
    print("one process, 1 in-process worker x concurrency 8 (like vai serve); per item; target fan-out <= 2x")
    print(f"{'database':<9} {'items':>7} {'independent':>12} {'fan-out':>10} {'ratio':>7} {'RSS after':>10}")
    for row in rows:
        n = row["items"]
        ind, fan = row["independent_s"] / n * 1000, row["fan_out_s"] / n * 1000
        print(f"{row['database']:<9} {n:>7} {ind:>9.3f} ms {fan:>7.3f} ms {fan / ind:>6.2f}x {row['rss_mb']:>7.0f} MB")


if __name__ == "__main__":
    main()
