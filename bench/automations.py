"""Automation engine overhead on PostgreSQL, each figure against its anchor measured in the same run.

1. Fan-out: one step with ``for_each`` over 1,000 items of the no-op kind (``echo``), against 1,000 independent no-op
   ActionRuns created at once, executed by the same ``vai worker`` processes. Target: fan-out ≤ 1.5x the independent
   runs (time from the request to the last completion).
2. Chain: 200 sequential no-op steps (each ``depends_on`` the previous one), against the same chain as a DBOS
   workflow of 200 ``@DBOS.step`` calls (its own PostgreSQL database). Target: our per-step overhead below DBOS's.
   DBOS runs in a process of its own, started first and driven a round at a time: each round of our chain is
   followed at once by a round of DBOS's, so the machine's drift touches both sides alike, and the median of the
   per-round ratios is reported next to the ratio of the medians.
   Each side's CPU per step is reported too, split into the Python processes (our workers; DBOS's process) and the
   PostgreSQL processes serving its database (``bench/_cpu.py``): wall times on a shared machine move by tens of
   percent between runs, CPU seconds much less.

Both sides' databases are analyzed before each measured part, as autovacuum would have done on a database in service
(it is off on the bench server; without statistics each side keeps plans made for nearly empty tables).

Scratch databases are created and dropped here (``VAI_BENCH_POSTGRES_URL``, default the test server). Knobs:
``VAI_BENCH_WORKERS`` (processes, default 2), ``VAI_BENCH_CONCURRENCY`` (per process, default 8),
``VAI_BENCH_ROUNDS`` (default 2; the median is reported), ``VAI_BENCH_PARTS`` (a comma list of ``fan_out``, ``chain``,
``dbos``; default all three: ``VAI_BENCH_PARTS=chain`` measures only our chain, to iterate on the engine quickly),
``VAI_BENCH_CHAIN_STEPS`` (default 200).

    .venv/bin/python -m bench automations
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from bench._cpu import POSTGRES_BACKENDS_SQL, cpu_seconds
from bench._workers import REPO_ROOT, vai_workers

ADMIN_URL = os.environ.get("VAI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FAN_OUT_ITEMS = 1000
CHAIN_STEPS = int(os.environ.get("VAI_BENCH_CHAIN_STEPS", "200"))
WORKERS = int(os.environ.get("VAI_BENCH_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("VAI_BENCH_CONCURRENCY", "8"))
ROUNDS = int(os.environ.get("VAI_BENCH_ROUNDS", "2"))
PARTS = frozenset(part.strip() for part in os.environ.get("VAI_BENCH_PARTS", "fan_out,chain,dbos").split(","))


def _pg_url(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this run only; dropped afterwards whatever happens."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _pg_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def workers(url: str, data_dir: Path) -> AsyncIterator[list[int]]:
    """``WORKERS`` ``vai worker`` processes (each with the automation engine's hook), ready to claim: their pids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAI_") or k.startswith("VAI_ORCHESTRATION_")}
    env |= {"VAI_DATABASE_URL": url, "VAI_DATA_DIR": str(data_dir), "VAI_LOG_LEVEL": "WARNING"}
    async with vai_workers(env, WORKERS, CONCURRENCY) as pids:
        yield pids


@dataclass
class Figures:
    independent_s: list[float]
    fan_out_s: list[float]
    chain_s: list[float]
    dbos_chain_s: list[float]
    chain_phases: list[dict[str, float]]
    chain_cpu: CpuSplit
    dbos_cpu: CpuSplit


@dataclass
class CpuSplit:
    """CPU seconds of each chain round: the Python side, and the PostgreSQL processes serving its database."""

    python: list[float]
    postgres: list[float]

    def per_step_ms(self, steps: int) -> tuple[float, float]:
        rounds = len(self.python)
        return sum(self.python) / rounds / steps * 1000, sum(self.postgres) / rounds / steps * 1000


async def phases_of(watch: asyncpg.Connection, automation_run_id: str) -> dict[str, float]:
    """Where a chain step's time goes, median ms over its steps, from the ActionRuns' own timestamps: ``to_claim``
    (created by the engine → claimed by a worker), ``to_finish`` (claimed → outcome recorded: the execution) and
    ``to_next`` (recorded → the next step's ActionRun created: wake-up, hook and the engine pass so far)."""
    rows = await watch.fetch(
        "SELECT created_at, started_at, finished_at FROM action_runs WHERE parent_run_id = $1 ORDER BY created_at",
        automation_run_id,
    )

    def ms(later: datetime, earlier: datetime) -> float:
        return (later - earlier).total_seconds() * 1000

    return {
        "to_claim": statistics.median(ms(r["started_at"], r["created_at"]) for r in rows),
        "to_finish": statistics.median(ms(r["finished_at"], r["started_at"]) for r in rows),
        "to_next": statistics.median(ms(b["created_at"], a["finished_at"]) for a, b in itertools.pairwise(rows)),
    }


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} did not finish within {timeout_s}s")
        await asyncio.sleep(0.01)


async def measure_ours(
    url: str, data_dir: Path, dbos: DbosChain | None
) -> tuple[list[float], list[float], list[float], list[dict[str, float]], CpuSplit]:
    from virtuousai.actions.registry import default_registry
    from virtuousai.actions.service import ActionRunService
    from virtuousai.automations.runs import AutomationRunService
    from virtuousai.automations.service import AutomationService
    from virtuousai.automations.spec import AutomationSpec
    from virtuousai.config import Settings
    from virtuousai.orgs.service import create_organization
    from virtuousai.process import build_orchestrator
    from virtuousai.store import migrate
    from virtuousai.store.engine import make_engine, make_sessionmaker
    from virtuousai.store.tenant import TenantContext

    engine = make_engine(url)
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        created = await create_organization(session, "Bench", "bench@example.com")
    tenant = TenantContext(tenant_id=created.organization.id, user_id=created.owner.id)
    watch = await asyncpg.connect(url)
    fan_out = {
        "name": "fan",
        "slug": "fan",
        "steps": [{"key": "fan", "action": "echo", "for_each": list(range(FAN_OUT_ITEMS)), "inputs": {}}],
    }
    chain = {
        "name": "chain",
        "slug": "chain",
        "steps": [
            {"key": f"s{i}", "action": "echo", "depends_on": [f"s{i - 1}"] if i else []} for i in range(CHAIN_STEPS)
        ],
    }
    warm_up = {
        "name": "warm",
        "slug": "warm",
        "steps": [
            {"key": "a", "action": "echo", "for_each": list(range(20))},
            {"key": "b", "action": "echo", "depends_on": ["a"]},
        ],
    }
    async with sessions() as session:
        for spec in (fan_out, chain, warm_up):
            await AutomationService(session, tenant).create(AutomationSpec.model_validate(spec))

    async def independent() -> float:
        started = time.perf_counter()
        async with sessions() as session:
            service = ActionRunService(session, tenant)
            for _ in range(FAN_OUT_ITEMS):
                await service.create(kind="echo", inputs={}, commit=False)
            await session.commit()

        async def done() -> bool:
            pending = await watch.fetchval(
                "SELECT count(*) FROM action_runs WHERE parent_run_id IS NULL "
                "AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            )
            return int(pending) == 0

        await _until(done, "the independent runs")
        return time.perf_counter() - started

    chain_phases: list[dict[str, float]] = []
    chain_cpu = CpuSplit([], [])
    # This process starts the runs (their first pass); the workers' processes advance them from there.
    orchestrator = build_orchestrator(sessions, default_registry(), Settings())

    async def automation(slug: str) -> float:
        started = time.perf_counter()
        async with sessions() as session:
            run = await AutomationRunService(session, tenant, orchestrator).start(f"slug:{slug}", {})
            run_id = run.id

        async def done() -> bool:
            status = await watch.fetchval("SELECT status FROM automation_runs WHERE id = $1", run_id)
            if status in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"bench: automation run {run_id} ended {status}")
            return bool(status == "COMPLETED")

        await _until(done, f"automation {slug}")
        elapsed = time.perf_counter() - started
        if slug == "chain":
            chain_phases.append(await phases_of(watch, run_id))
        return elapsed

    try:
        async with workers(url, data_dir) as worker_pids:
            await automation("warm")
            independent_s, fan_out_s, chain_s = [], [], []
            for _ in range(ROUNDS):  # interleaved, so drift of the shared machine touches both sides alike
                if "fan_out" in PARTS:
                    await watch.execute("ANALYZE")
                    independent_s.append(await independent())
                    await watch.execute("ANALYZE")
                    fan_out_s.append(await automation("fan"))
                if "chain" in PARTS:
                    await watch.execute("ANALYZE")
                    backends = [row["pid"] for row in await watch.fetch(POSTGRES_BACKENDS_SQL)]
                    python_started, postgres_started = cpu_seconds(worker_pids), cpu_seconds(backends)
                    chain_s.append(await automation("chain"))
                    chain_cpu.python.append(cpu_seconds(worker_pids) - python_started)
                    chain_cpu.postgres.append(cpu_seconds(backends) - postgres_started)
                if dbos is not None:
                    await dbos.round()  # right after ours: both sides of a round see the same machine
    finally:
        await watch.close()
        await engine.dispose()
    return independent_s, fan_out_s, chain_s, chain_phases, chain_cpu


class DbosChain:
    """The DBOS side, a process of its own (``bench/_automations_dbos.py``), driven one round at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seconds: list[float] = []
        self.cpu = CpuSplit([], [])

    @classmethod
    @asynccontextmanager
    async def started(cls, url: str) -> AsyncIterator[DbosChain]:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench._automations_dbos", url, str(CHAIN_STEPS)),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            if await cls._line(process) != "ready":
                raise RuntimeError("bench: the DBOS side did not start")
            yield cls(process)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()

    @staticmethod
    async def _line(process: asyncio.subprocess.Process) -> str:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=600)
        if not line:
            raise RuntimeError(f"bench: the DBOS chain failed (exit {await process.wait()})")
        return line.decode().strip()

    async def round(self) -> None:
        """One workflow of ``CHAIN_STEPS`` steps; its figures are added to ``seconds`` and ``cpu``."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"round\n")
        await self.process.stdin.drain()
        figures = json.loads(await self._line(self.process))
        self.seconds.append(figures["seconds"])
        self.cpu.python.append(figures["cpu"])
        self.cpu.postgres.append(figures["postgres_cpu"])


async def measure() -> Figures:
    with tempfile.TemporaryDirectory(prefix="vai-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            dbos = None
            if "dbos" in PARTS:
                dbos_url = await stack.enter_async_context(scratch_database("vai_bench_dbos"))
                dbos = await stack.enter_async_context(DbosChain.started(dbos_url))
            url = await stack.enter_async_context(scratch_database("vai_bench_aut"))
            independent_s, fan_out_s, chain_s, chain_phases, chain_cpu = await measure_ours(url, Path(tmp), dbos)
        dbos_chain_s = [] if dbos is None else dbos.seconds
        dbos_cpu = CpuSplit([], []) if dbos is None else dbos.cpu
    return Figures(independent_s, fan_out_s, chain_s, dbos_chain_s, chain_phases, chain_cpu, dbos_cpu)


def main() -> None:
    figures = asyncio.run(measure())
    rows: list[tuple[str, str, str, str]] = []
    if figures.independent_s:
        independent = statistics.median(figures.independent_s)
        fan_out = statistics.median(figures.fan_out_s)
        rows.append(("1,000 independent no-op ActionRuns", f"{independent:.2f} s", "anchor", ""))
        ratio = f"{fan_out / independent:.2f}x"
        rows.append(("1,000-item fan-out (one for_each step)", f"{fan_out:.2f} s", ratio, "≤ 1.5x"))
    dbos_per_step = None
    if figures.dbos_chain_s:
        dbos_per_step = statistics.median(figures.dbos_chain_s) / CHAIN_STEPS * 1000
        rows.append((f"DBOS: {CHAIN_STEPS}-step workflow, per step", f"{dbos_per_step:.2f} ms", "anchor", ""))
    if figures.chain_s:
        per_step = statistics.median(figures.chain_s) / CHAIN_STEPS * 1000
        ratio = "" if dbos_per_step is None else f"{per_step / dbos_per_step:.2f}x"
        rows.append((f"{CHAIN_STEPS}-step chain, per step", f"{per_step:.2f} ms", ratio, "< 1x"))
        if len(figures.dbos_chain_s) == len(figures.chain_s):
            # Each round of ours ran right before a round of DBOS: within a round, both sides met the same load.
            paired = [ours / theirs for ours, theirs in zip(figures.chain_s, figures.dbos_chain_s, strict=True)]
            rows.append(("  the same, median of per-round ratios", "", f"{statistics.median(paired):.2f}x", "< 1x"))
    print(f"PostgreSQL, {WORKERS} vai worker processes x concurrency {CONCURRENCY}, median of {ROUNDS} rounds")
    print(f"{'measure':<42} {'time':>10} {'ratio':>8} {'target':>8}")
    for name, value, ratio, target in rows:
        print(f"{name:<42} {value:>10} {ratio:>8} {target:>8}")
    if figures.chain_phases:
        phases = {name: statistics.median(p[name] for p in figures.chain_phases) for name in figures.chain_phases[0]}
        print("chain step phases, median ms:", ", ".join(f"{name} {value:.2f}" for name, value in phases.items()))
    for side, cpu in (("ours: worker processes", figures.chain_cpu), ("DBOS: its process", figures.dbos_cpu)):
        if cpu.python:
            python_ms, postgres_ms = cpu.per_step_ms(CHAIN_STEPS)
            print(f"CPU per chain step, {side} {python_ms:.2f} ms + PostgreSQL {postgres_ms:.2f} ms")
    rounds = {
        "independent_s": figures.independent_s,
        "fan_out_s": figures.fan_out_s,
        "chain_s": figures.chain_s,
        "dbos_chain_s": figures.dbos_chain_s,
    }
    print("rounds:", json.dumps({name: [round(s, 3) for s in values] for name, values in rounds.items() if values}))


if __name__ == "__main__":
    main()
