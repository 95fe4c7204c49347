"""Agent runs: the durable loop's overhead per tool step, against a plain pydantic-ai ``Agent`` loop, side by side.

Every model call goes to one loopback model (``bench/_agents_llm.py``): an OpenAI chat-completions server in a
process of its own that answers at once, stateless (turn k is chosen from the tool results the conversation carries:
one call of the no-op read tool ``bench_noop`` until the run has made its ``steps``, then a text answer). Both sides
reach it through the same pydantic-ai ``OpenAIChatModel`` on the same OpenAI SDK and HTTP pool, streamed (our model
calls always stream), so both pay the same model, SDK and HTTP cost and the difference is what durability costs:
the persisted steps, the ActionRuns, their claims and leases, the orchestrator's passes and their commits.

1. Loop overhead: one 50-step run (50 model turns with one tool call each, then a final text turn), in rounds; each
   round runs, one right after the other, ours on SQLite and on PostgreSQL (each one process like ``vai serve``: the
   app with one in-process worker, a fresh database), then pydantic-ai against the loopback server (streamed, as
   ours; and not streamed, ``Agent.run``'s default) and against ``FunctionModel`` (the model in memory: the issue's
   "in-memory pydantic-ai loop"). A side's time is from the start request to the terminal state, per tool step;
   the median over the rounds is reported, with the ratio to pydantic-ai on the same loopback server and the
   per-step overhead, ``(ours - pydantic-ai loopback) / steps``. Ours cannot use ``FunctionModel`` (a model call is
   an ActionRun that builds its model from an LLM connection), so its ratio to the in-memory loop is reported
   twice: as measured, and with the SDK's share taken out (``FunctionModel + our overhead``). Each side's CPU per
   step (this process, and for PostgreSQL its server processes) is reported too: wall times on a shared machine move
   by tens of percent, CPU much less.
2. Where a step of ours goes: from the ActionRuns' own timestamps (created, started = claimed, finished) and the
   loopback server's (a request arrived, was answered): the model call's claim, its execution before the request
   reached the server (reading the connection, building the chain, validating the conversation, the SDK's request)
   and after the answer (the stream's parsing, the output, recording the finish), the orchestrator's pass to the
   tool call's ActionRun, its claim and execution, and the pass to the next model call; medians over the steps of
   the last round, with statements and commits per step (SQLAlchemy's engine events).
3. Concurrency: 100 agent runs of 5 steps each started at once on PostgreSQL, executed by 2 ``vai worker``
   processes (concurrency 8 each); total time, runs/s, and the step latency (from one model request of a run to
   its next, on the loopback server's clock) at p50 and p99 — against the same 100 runs as concurrent pydantic-ai
   loops in one process.

Knobs: ``VAI_BENCH_AGENT_STEPS`` (50), ``VAI_BENCH_AGENT_ROUNDS`` (5), ``VAI_BENCH_AGENT_DATABASES``
(``sqlite,postgres``), ``VAI_BENCH_AGENT_PARTS`` (``loop,concurrency``), ``VAI_BENCH_AGENT_RUNS`` (100),
``VAI_BENCH_AGENT_RUN_STEPS`` (5), ``VAI_BENCH_WORKERS`` (2), ``VAI_BENCH_CONCURRENCY`` (8),
``VAI_BENCH_POSTGRES_URL``.

    .venv/bin/python -m bench agents
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import itertools
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench._cpu import POSTGRES_BACKENDS_SQL, cpu_seconds
from bench._workers import REPO_ROOT, vai_workers

ADMIN_URL = os.environ.get("VAI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STEPS = int(os.environ.get("VAI_BENCH_AGENT_STEPS", "50"))
ROUNDS = int(os.environ.get("VAI_BENCH_AGENT_ROUNDS", "5"))
DATABASES = [d.strip() for d in os.environ.get("VAI_BENCH_AGENT_DATABASES", "sqlite,postgres").split(",") if d]
PARTS = frozenset(p.strip() for p in os.environ.get("VAI_BENCH_AGENT_PARTS", "loop,concurrency").split(","))
CONCURRENT_RUNS = int(os.environ.get("VAI_BENCH_AGENT_RUNS", "100"))
RUN_STEPS = int(os.environ.get("VAI_BENCH_AGENT_RUN_STEPS", "5"))
WORKERS = int(os.environ.get("VAI_BENCH_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("VAI_BENCH_CONCURRENCY", "8"))
TOOLS_MODULE = "bench._agents_tools"
TOOL = "bench_noop"
MODEL = "bench-model"
INSTRUCTIONS = "You answer questions with your tools."
SPEC = f"""---
name: Bench
slug: bench
mode: primary
tools:
  - {TOOL}
---

{INSTRUCTIONS}
"""


def prompt(steps: int, tag: str) -> str:
    return f"Look up what you need. steps={steps} id={tag}"


def epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the loopback model ------------------------------------------------------------------------------------------


class Loopback:
    """``bench/_agents_llm.py`` in a process of its own."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.pid = process.pid
        self._client = httpx.AsyncClient()

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls) -> AsyncIterator[Loopback]:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench._agents_llm"),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdin is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        if not line.startswith("port "):
            raise RuntimeError(f"bench: the loopback model did not start: {line!r}")
        server = cls(process, int(line.split()[1]))
        try:
            yield server
        finally:
            await server._client.aclose()
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def log(self) -> list[dict[str, Any]]:
        """The requests since the last call: ``{arrived, answered, tag, tool_results}``."""
        response = await self._client.get(self.base_url.removesuffix("/v1") + "/log")
        entries: list[dict[str, Any]] = response.json()
        return entries


def step_latencies(log: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Per conversation: ms from each model request's arrival to the next one's (one tool step each)."""
    by_tag: dict[str, list[float]] = {}
    for entry in sorted(log, key=lambda e: e["arrived"]):
        by_tag.setdefault(entry["tag"], []).append(entry["arrived"])
    return {tag: [(b - a) * 1000 for a, b in itertools.pairwise(times)] for tag, times in by_tag.items()}


# -- pydantic-ai, the anchor ---------------------------------------------------------------------------------------


class PydanticAiSide:
    """A plain pydantic-ai ``Agent`` with the same no-op tool: on the loopback server (the same ``OpenAIChatModel``
    and SDK client our model calls build, ``llm/providers.py``) or on ``FunctionModel``."""

    def __init__(self, base_url: str) -> None:
        import openai
        from openai import AsyncOpenAI
        from pydantic_ai import Agent
        from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
        from pydantic_ai.models.function import AgentInfo, FunctionModel
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        # As ``llm/providers.py`` builds it, on an HTTP pool of the same kind (its own: the apps close theirs).
        self.http = openai.DefaultAsyncHttpxClient()
        client = AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0, timeout=60, http_client=self.http)
        self.loopback = Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client)))

        def in_memory(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            done = sum(1 for m in messages for part in getattr(m, "parts", ()) if isinstance(part, ToolReturnPart))
            steps = self._steps
            if done < steps:
                return ModelResponse(parts=[ToolCallPart(TOOL, {"q": f"item {done}"}, tool_call_id=f"call_{done}")])
            return ModelResponse(parts=[TextPart("done")])

        self._steps = STEPS
        self.function = Agent(FunctionModel(in_memory))
        for agent in (self.loopback, self.function):

            @agent.tool_plain(name=TOOL)
            async def bench_noop(q: str) -> dict[str, str]:
                """Bench only: a read tool that does nothing."""
                return {"answer": f"the answer to {q}"}

    async def run(self, agent: Any, steps: int, tag: str, *, stream: bool) -> float:
        from pydantic_ai.usage import UsageLimits

        async def drain(_ctx: Any, events: AsyncIterator[Any]) -> None:
            async for _ in events:
                pass

        self._steps = steps
        started = time.perf_counter()
        result = await agent.run(
            prompt(steps, tag),
            instructions=INSTRUCTIONS,
            usage_limits=UsageLimits(request_limit=None),
            event_stream_handler=drain if stream else None,
        )
        elapsed = time.perf_counter() - started
        if result.output != "done":
            raise RuntimeError(f"bench: pydantic-ai answered {result.output!r}")
        return elapsed


# -- ours --------------------------------------------------------------------------------------------------------


@dataclass
class Statements:
    """Statements, commits and time in the driver, counted on the engine (every session of the process)."""

    count: int = 0
    commits: int = 0
    seconds: float = 0.0
    _started: dict[int, float] = field(default_factory=dict)

    def attach(self, engine: Any) -> None:
        import sqlalchemy as sa

        sync = engine.sync_engine

        @sa.event.listens_for(sync, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            self._started[id(cursor)] = time.perf_counter()

        @sa.event.listens_for(sync, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            self.count += 1
            self.seconds += time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())

        @sa.event.listens_for(sync, "commit")
        def commit(conn: Any) -> None:
            self.commits += 1

    def snapshot(self) -> tuple[int, int, float]:
        return self.count, self.commits, self.seconds


@contextlib.asynccontextmanager
async def scratch_url(database: str, tmp: Path) -> AsyncIterator[str]:
    """A fresh database for this side only (PostgreSQL: created here, dropped afterwards whatever happens)."""
    if database == "sqlite":
        tmp.mkdir(parents=True, exist_ok=True)
        yield f"sqlite+aiosqlite:///{tmp / f'bench-{secrets.token_hex(3)}.db'}"
        return
    name = f"vai_bench_agents_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield ADMIN_URL.rpartition("/")[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class RunFigures:
    seconds: float
    cpu_s: float
    pg_cpu_s: float
    statements: int
    commits: int
    db_s: float
    run_id: str


class OursSide:
    """One process like ``vai serve`` (``workers`` in-process workers; 0 when ``vai worker`` processes execute),
    its organization with the loopback LLM connection and the bench agent."""

    def __init__(self, database: str, app: Any, url: str, tenant: Any, statements: Statements) -> None:
        self.database = database
        self.app = app
        self.url = url
        self.tenant = tenant
        self.statements = statements
        self.watch: asyncpg.Connection | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def started(
        cls, database: str, tmp: Path, loopback: Loopback, *, workers: int = 1
    ) -> AsyncIterator[OursSide]:
        from virtuousai.app import create_app
        from virtuousai.config import Settings
        from virtuousai.orgs.service import create_organization
        from virtuousai.store import migrate
        from virtuousai.store.engine import make_engine
        from virtuousai.store.tenant import TenantContext

        async with scratch_url(database, tmp) as url:
            settings = Settings(
                database_url=url, data_dir=tmp / "var", kind_modules=(TOOLS_MODULE,), log_level="WARNING"
            )
            engine = make_engine(settings.resolved_database_url)
            await migrate.upgrade(engine)
            await engine.dispose()
            app = create_app(settings, workers=workers)
            async with app.router.lifespan_context(app):
                statements = Statements()
                statements.attach(app.state.engine)
                async with app.state.sessions() as session:
                    created = await create_organization(session, "Bench", "bench@example.com")
                tenant = TenantContext(tenant_id=created.organization.id, user_id=created.owner.id)
                headers = {"Authorization": f"Bearer {created.key.plaintext}"}
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as api:
                    config = {
                        "base_url": loopback.base_url,
                        "models": [MODEL],
                        "prices": {"*": {"input_per_mtok": "1", "output_per_mtok": "2"}},
                    }
                    connection = {
                        "provider": "openai",
                        "name": "loopback",
                        "slug": "loopback",
                        "config": config,
                        "secrets": {"api_key": "sk-bench"},
                    }
                    spec = {"markdown": SPEC}
                    for path, body in (("/api/v1/connections", connection), ("/api/v1/agents/specs", spec)):
                        response = await api.post(path, json=body)
                        if response.status_code != 201:
                            raise RuntimeError(f"bench: POST {path}: {response.status_code} {response.text}")
                side = cls(database, app, url, tenant, statements)
                if database == "postgres":
                    side.watch = await asyncpg.connect(url)
                try:
                    yield side
                finally:
                    if side.watch is not None:
                        await side.watch.close()

    def service(self, session: Any) -> Any:
        from virtuousai.agents.runs import AgentRunService

        return AgentRunService(session, self.tenant, self.app.state.orchestrator, self.app.state.registry)

    async def start(self, steps: int, tag: str) -> str:
        async with self.app.state.sessions() as session:
            run = await self.service(session).start("bench", prompt(steps, tag))
            return str(run.id)

    async def run(self, steps: int, tag: str) -> RunFigures:
        """One run from the start request to its terminal state (``AgentRunService.wait``: woken at its commit)."""
        backends = [] if self.watch is None else [r["pid"] for r in await self.watch.fetch(POSTGRES_BACKENDS_SQL)]
        counted = self.statements.snapshot()
        cpu_started, pg_started = time.process_time(), cpu_seconds(backends)
        started = time.perf_counter()
        run_id = await self.start(steps, tag)
        async with self.app.state.sessions() as session:
            run = await self.service(session).wait(run_id, 600)
        elapsed = time.perf_counter() - started
        cpu, pg_cpu = time.process_time() - cpu_started, cpu_seconds(backends) - pg_started
        count, commits, db_s = (now - before for now, before in zip(self.statements.snapshot(), counted, strict=True))
        if run.status != "COMPLETED" or run.tool_calls != steps:
            raise RuntimeError(f"bench: agent run {run_id} ended {run.status} ({run.reason}: {run.detail})")
        return RunFigures(elapsed, cpu, pg_cpu, int(count), int(commits), float(db_s), run_id)

    async def children(self, run_id: str) -> list[tuple[str, float, float, float]]:
        """The run's ActionRuns in order: ``(kind, created, started, finished)`` as epoch seconds."""
        import sqlalchemy as sa

        from virtuousai.runtime.tables import ActionRun

        async with self.app.state.sessions() as session:
            rows = await session.execute(
                sa.select(ActionRun.kind, ActionRun.created_at, ActionRun.started_at, ActionRun.finished_at)
                .where(ActionRun.parent_run_id == run_id)
                .order_by(ActionRun.created_at)
            )
            return [(kind, epoch(c), epoch(s), epoch(f)) for kind, c, s, f in rows]


PHASES = (
    ("model call: claimed", "created → started (claim)"),
    ("model call: to the request", "started → request at the server"),
    ("model call: server", "request → answer written"),
    ("model call: after the answer", "answer → finished (parse, output, record)"),
    ("pass: model → tool", "model finished → tool ActionRun created"),
    ("tool call: claimed", "created → started (claim)"),
    ("tool call: executed", "started → finished"),
    ("pass: tool → model", "tool finished → next model ActionRun created"),
)


def step_phases(
    children: Sequence[tuple[str, float, float, float]], log: Sequence[dict[str, Any]]
) -> dict[str, list[float]]:
    """The ms of each phase of each tool step of one run (``PHASES``, then the whole step), from its ActionRuns and
    the loopback server's log of its conversation."""
    from virtuousai.agents.kinds import MODEL_CALL_KIND

    models = [c for c in children if c[0] == MODEL_CALL_KIND]
    tools = [c for c in children if c[0] != MODEL_CALL_KIND]
    requests = {entry["tool_results"]: entry for entry in log}
    phases: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    phases["whole step"] = []
    for k, (model, tool, following) in enumerate(zip(models, tools, models[1:], strict=False)):
        request = requests.get(k)
        _, m_created, m_started, m_finished = model
        _, t_created, t_started, t_finished = tool
        values = [m_started - m_created]
        if request is None:
            values += [float("nan")] * 3
        else:
            values += [
                request["arrived"] - m_started,
                request["answered"] - request["arrived"],
                m_finished - request["answered"],
            ]
        values += [t_created - m_finished, t_started - t_created, t_finished - t_started, following[1] - t_finished]
        for (name, _), value in zip(PHASES, values, strict=True):
            phases[name].append(value * 1000)
        phases["whole step"].append((following[1] - m_created) * 1000)
    return phases


def merged(runs: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for phases in runs:
        for name, values in phases.items():
            out.setdefault(name, []).extend(v for v in values if v == v)
    return out


def answer_to_next_request(log: Sequence[dict[str, Any]]) -> list[float]:
    """Per conversation: ms from an answer written to the next request arriving (all of a side's work per step)."""
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(log, key=lambda e: e["arrived"]):
        by_tag.setdefault(entry["tag"], []).append(entry)
    return [
        (b["arrived"] - a["answered"]) * 1000 for entries in by_tag.values() for a, b in itertools.pairwise(entries)
    ]


# -- part 1 and 2: one run at a time -----------------------------------------------------------------------------


@dataclass
class LoopFigures:
    ours: dict[str, list[RunFigures]] = field(default_factory=dict)
    pydantic_ai: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (seconds, cpu seconds)
    breakdown: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    anchor_gap: list[float] = field(default_factory=list)  # pydantic-ai streamed: answer → next request, ms


async def measure_loop(loopback: Loopback, tmp: Path) -> LoopFigures:
    figures = LoopFigures()
    anchor = PydanticAiSide(loopback.base_url)
    anchors: dict[str, Callable[[int, str], Any]] = {
        "loopback, streamed": lambda steps, tag: anchor.run(anchor.loopback, steps, tag, stream=True),
        "loopback, not streamed": lambda steps, tag: anchor.run(anchor.loopback, steps, tag, stream=False),
        "FunctionModel (in memory)": lambda steps, tag: anchor.run(anchor.function, steps, tag, stream=False),
    }
    async with contextlib.AsyncExitStack() as stack:
        sides = [await stack.enter_async_context(OursSide.started(db, tmp, loopback)) for db in DATABASES]
        for side in sides:  # warm up: the first run parses the spec, opens pools, imports lazily
            await side.run(3, f"warm-{side.database}")
        for run_anchor in anchors.values():
            await run_anchor(3, "warm-anchor")
        await loopback.log()
        for round_no in range(ROUNDS):
            for side in sides:
                result = await side.run(STEPS, f"{side.database}-{round_no}")
                log = await loopback.log()
                figures.ours.setdefault(side.database, []).append(result)
                if round_no == ROUNDS - 1:
                    figures.breakdown[side.database] = step_phases(await side.children(result.run_id), log)
            for n, (name, run_anchor) in enumerate(anchors.items()):
                cpu_started = time.process_time()
                seconds = await run_anchor(STEPS, f"anchor{n}-{round_no}")
                figures.pydantic_ai.setdefault(name, []).append((seconds, time.process_time() - cpu_started))
                log = await loopback.log()
                if round_no == ROUNDS - 1 and n == 0:
                    figures.anchor_gap = answer_to_next_request(log)
    return figures


def print_loop(figures: LoopFigures) -> None:
    per_step = 1000 / STEPS
    anchor = {name: median([s for s, _ in runs]) * per_step for name, runs in figures.pydantic_ai.items()}
    anchor_cpu = {name: median([c for _, c in runs]) * per_step for name, runs in figures.pydantic_ai.items()}
    loop_ms, memory_ms = anchor["loopback, streamed"], anchor["FunctionModel (in memory)"]
    print(f"1. loop overhead: one {STEPS}-step run (a no-op read tool per model turn), median of {ROUNDS} rounds;")
    print("   ours: one process, 1 in-process worker (like vai serve); per tool step; CPU: this process (+ PostgreSQL)")
    print(f"{'side':<44} {'ms/step':>8} {'CPU ms':>12} {'vs pyd-ai loopback':>19} {'overhead/step':>14}")
    for database, runs in figures.ours.items():
        ms = median([r.seconds for r in runs]) * per_step
        cpu = median([r.cpu_s for r in runs]) * per_step
        pg = median([r.pg_cpu_s for r in runs]) * per_step
        cpu_text = f"{cpu:.2f}" + (f" + {pg:.2f}" if database == "postgres" else "")
        name = f"ours, {'SQLite' if database == 'sqlite' else 'PostgreSQL'}"
        print(f"{name:<44} {ms:>8.2f} {cpu_text:>12} {ms / loop_ms:>18.2f}x {ms - loop_ms:>11.2f} ms")
    for name, ms in anchor.items():
        ratio = f"{ms / loop_ms:.2f}x"
        print(f"{'pydantic-ai Agent, ' + name:<44} {ms:>8.2f} {anchor_cpu[name]:>12.2f} {ratio:>19} {'':>14}")
    print("targets: overhead ≤ 5 ms per step; ≤ 3x the in-memory pydantic-ai loop")
    for database, runs in figures.ours.items():
        ms = median([r.seconds for r in runs]) * per_step
        overhead = ms - loop_ms
        estimated = memory_ms + overhead
        print(
            f"  {database:<9} overhead {overhead:6.2f} ms/step: {'met' if overhead <= 5 else 'NOT met'};"
            f" vs FunctionModel {ms / memory_ms:5.2f}x as measured (SDK included),"
            f" {estimated / memory_ms:5.2f}x with the SDK's share out (FunctionModel + overhead):"
            f" {'met' if estimated / memory_ms <= 3 else 'NOT met'}"
        )
    print(f"2. where a step of ours goes: median ms over the {STEPS} steps of the last round")
    databases = list(figures.breakdown)
    print(f"{'phase':<30} {'measured as':<44} " + " ".join(f"{d:>9}" for d in databases))
    for name, how in (*PHASES, ("whole step", "model created → next model created")):
        values = " ".join(f"{median(figures.breakdown[d][name]):>9.2f}" for d in databases)
        print(f"{name:<30} {how:<44} {values}")
    tenth = max(1, STEPS // 5)
    for label, part in (
        (f"whole step, first {tenth}", slice(0, tenth)),
        (f"whole step, last {tenth}", slice(-tenth, None)),
    ):
        values = " ".join(f"{median(figures.breakdown[d]['whole step'][part]):>9.2f}" for d in databases)
        print(f"{label:<30} {'(the conversation grows)':<44} {values}")
    print("pydantic-ai, streamed, on the same loopback: answer → next request (all its work in a step), median ms:")
    gap = figures.anchor_gap
    print(f"  all {median(gap):.2f}, first {tenth} {median(gap[:tenth]):.2f}, last {tenth} {median(gap[-tenth:]):.2f}")
    for label, pick in (
        ("statements per step", lambda r: r.statements / STEPS),
        ("commits per step", lambda r: r.commits / STEPS),
        ("ms in the driver per step", lambda r: r.db_s * 1000 / STEPS),
    ):
        values = " ".join(f"{median([pick(r) for r in figures.ours[d]]):>9.2f}" for d in databases)
        print(f"{label:<75} {values}")
    rounds = {name: [round(r.seconds * per_step, 2) for r in runs] for name, runs in figures.ours.items()}
    rounds |= {name: [round(s * per_step, 2) for s, _ in runs] for name, runs in figures.pydantic_ai.items()}
    print("rounds, ms/step:", rounds)


# -- part 3: concurrency -----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def worker_processes(url: str, data_dir: Path) -> AsyncIterator[list[int]]:
    """``WORKERS`` ``vai worker`` processes with the bench's tool, ready to claim: their pids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAI_")}
    env |= {
        "VAI_DATABASE_URL": url,
        "VAI_DATA_DIR": str(data_dir),
        "VAI_LOG_LEVEL": "WARNING",
        "VAI_KIND_MODULES": TOOLS_MODULE,
    }
    async with vai_workers(env, WORKERS, CONCURRENCY) as pids:
        yield pids


@dataclass
class ConcurrencyFigures:
    ours_s: float
    ours_steps: list[float]
    ours_cpu: float
    pg_cpu: float
    anchor_s: float
    anchor_steps: list[float]
    anchor_cpu: float
    phases: dict[str, list[float]]


async def measure_concurrency(loopback: Loopback, tmp: Path) -> ConcurrencyFigures:
    anchor = PydanticAiSide(loopback.base_url)
    await loopback.log()
    cpu_started = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(anchor.run(anchor.loopback, RUN_STEPS, f"pyd-{i}", stream=True) for i in range(CONCURRENT_RUNS))
    )
    anchor_s, anchor_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    anchor_steps = [ms for steps in step_latencies(await loopback.log()).values() for ms in steps]

    async with OursSide.started("postgres", tmp, loopback, workers=0) as side:
        assert side.watch is not None
        async with worker_processes(side.url, tmp / "var") as pids:
            await side.run(2, "warm-workers")  # the workers' first calls: imports, pools, the spec
            await loopback.log()
            backends = [r["pid"] for r in await side.watch.fetch(POSTGRES_BACKENDS_SQL)]
            cpu_started, pg_started = cpu_seconds(pids), cpu_seconds(backends)
            started = time.perf_counter()
            run_ids = await asyncio.gather(*(side.start(RUN_STEPS, f"ours-{i}") for i in range(CONCURRENT_RUNS)))
            deadline = time.monotonic() + 600
            while True:
                unfinished = await side.watch.fetchval(
                    "SELECT count(*) FROM agent_runs WHERE id = ANY($1::text[]) "
                    "AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
                    list(run_ids),
                )
                if not unfinished:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"bench: {unfinished} agent runs still unfinished after 600 s")
                await asyncio.sleep(0.02)
            ours_s = time.perf_counter() - started
            ours_cpu, pg_cpu = cpu_seconds(pids) - cpu_started, cpu_seconds(backends) - pg_started
            failed = await side.watch.fetchval(
                "SELECT count(*) FROM agent_runs WHERE id = ANY($1::text[]) AND status <> 'COMPLETED'", list(run_ids)
            )
            if failed:
                raise RuntimeError(f"bench: {failed} of the concurrent agent runs did not complete")
            log = await loopback.log()
            ours_steps = [ms for steps in step_latencies(log).values() for ms in steps]
            phases = merged(
                [
                    step_phases(await side.children(run_id), [e for e in log if e["tag"] == f"ours-{i}"])
                    for i, run_id in enumerate(run_ids)
                ]
            )
    return ConcurrencyFigures(ours_s, ours_steps, ours_cpu, pg_cpu, anchor_s, anchor_steps, anchor_cpu, phases)


def print_concurrency(figures: ConcurrencyFigures) -> None:
    steps = CONCURRENT_RUNS * RUN_STEPS
    print(
        f"3. concurrency: {CONCURRENT_RUNS} agent runs of {RUN_STEPS} tool steps started at once; ours on PostgreSQL,"
        f" {WORKERS} vai worker processes x concurrency {CONCURRENCY}; step latency = one model request of a run to"
        " its next, at the loopback server"
    )
    print(f"{'side':<44} {'total':>8} {'runs/s':>8} {'step p50':>9} {'step p99':>9} {'CPU ms/step':>14}")
    rows = (
        ("ours, PostgreSQL, 2 worker processes", figures.ours_s, figures.ours_steps, figures.ours_cpu, figures.pg_cpu),
        ("pydantic-ai Agent, one process, streamed", figures.anchor_s, figures.anchor_steps, figures.anchor_cpu, None),
    )
    for name, seconds, latencies, cpu, pg in rows:
        cpu_text = f"{cpu / steps * 1000:.2f}" + ("" if pg is None else f" + {pg / steps * 1000:.2f}")
        print(
            f"{name:<44} {seconds:>6.2f} s {CONCURRENT_RUNS / seconds:>8.1f} {percentile(latencies, 0.5):>6.1f} ms"
            f" {percentile(latencies, 0.99):>6.1f} ms {cpu_text:>14}"
        )
    p50 = percentile(figures.ours_steps, 0.5) - percentile(figures.anchor_steps, 0.5)
    p99 = percentile(figures.ours_steps, 0.99) - percentile(figures.anchor_steps, 0.99)
    print(f"step overhead under load (ours - pydantic-ai): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"where a step of ours goes under this load, ms over the {steps} steps:")
    print(f"{'phase':<30} {'measured as':<44} {'p50':>9} {'p99':>9}")
    for name, how in (*PHASES, ("whole step", "model created → next model created")):
        values = figures.phases.get(name, [])
        print(f"{name:<30} {how:<44} {percentile(values, 0.5):>9.2f} {percentile(values, 0.99):>9.2f}")


# -- main ----------------------------------------------------------------------------------------------------------


async def measure() -> None:
    with tempfile.TemporaryDirectory(prefix="vai-bench-agents-") as tmp:
        async with Loopback.started() as loopback:
            if "loop" in PARTS:
                print_loop(await measure_loop(loopback, Path(tmp) / "loop"))
            if "concurrency" in PARTS:
                print_concurrency(await measure_concurrency(loopback, Path(tmp) / "concurrency"))


def main() -> None:
    from virtuousai import eventloop

    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("virtuousai", "pydantic-ai-slim", "openai")
    )
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{versions}; Python {sys.version.split()[0]}; {os.cpu_count()} cores; load average {load} (before)")
    eventloop.run(measure())
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (after)")


if __name__ == "__main__":
    main()
