"""What one ``vai`` process runs, built once and given to everything that needs it (never created per request):

- the action kinds it executes (``actions.registry``) and the connection resolver of running actions;
- the ``Runtime``: ``workers`` workers, the watchdog, the wake-up listener;
- the ``Orchestrator``, which advances parent runs as their child ActionRuns end, with each kind of parent run
  (automation runs, agent runs);
- where this process executes runs (``workers`` > 0): the sweep of unfinished parent runs, the cron scheduler and
  the flashboards' refresher (on the lake query engine the kinds share).

``vai serve`` builds it in the app's lifespan (``virtuousai/app.py``), ``vai worker`` around its worker.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from virtuousai.actions.registry import load_registry
from virtuousai.agents.progress import AgentRuns
from virtuousai.automations.progress import AutomationRuns
from virtuousai.automations.scheduler import CronScheduler, SchedulerConfig
from virtuousai.config import Settings
from virtuousai.connections.resolver import StoredConnections
from virtuousai.data.engine import LakeQueryEngine
from virtuousai.flashboards.refresh import FlashboardRefresher, RefresherConfig
from virtuousai.llm.providers import close_shared_http_clients
from virtuousai.orchestration.fast_path import FastPath
from virtuousai.orchestration.orchestrator import KeptStates, Orchestrator, ParentRuns
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.supervisor import Runtime


def build_orchestrator(
    sessions: async_sessionmaker[AsyncSession], registry: KindRegistry, settings: Settings
) -> Orchestrator:
    """The orchestrator with every kind of parent run (a CLI command that starts a run builds one too)."""
    parents: list[ParentRuns] = [
        AutomationRuns(registry, fan_out_cap=settings.automation_max_fan_out),
        AgentRuns(registry, settings),
    ]
    return Orchestrator(sessions, parents, kept_states=KeptStates(1024 if settings.orchestration_kept_states else 0))


class ProcessServices:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        workers: int = 0,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.registry = load_registry(settings.kind_modules)
        self.runtime = Runtime(
            engine,
            sessions,
            settings,
            registry=self.registry,
            connections=StoredConnections(sessions, settings),
            workers=workers,
            concurrency=concurrency,
        )
        self.orchestrator = build_orchestrator(sessions, self.registry, settings)
        # A chain's child finishes together with its parent's next pass, in the worker that ran it (fast_path.py).
        if settings.orchestration_fast_path:
            fast_path = FastPath(self.orchestrator, lease_s=settings.lease_s)
            for worker in self.runtime.workers:
                worker.executor.parent_finisher = fast_path.finish
        self.scheduler = CronScheduler(
            sessions, self.orchestrator, SchedulerConfig(interval_s=settings.cron_interval_s)
        )
        self.refresher = FlashboardRefresher(
            sessions,
            self.lake_engine,
            RefresherConfig(interval_s=settings.cron_interval_s, tile_row_cap=settings.flashboard_tile_row_cap),
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def lake_engine(self) -> LakeQueryEngine:
        """The lake query engine this process's kinds share (made on first use, closed with the runtime)."""
        return self.runtime.shared.get(LakeQueryEngine, lambda: LakeQueryEngine.from_settings(self.settings))

    async def start(self) -> None:
        self.orchestrator.listen(self.runtime.hub)
        await self.runtime.start()
        if self.runtime.workers:
            sweeps = self.orchestrator.run_sweeps(self._stop, self.settings.automation_sweep_interval_s)
            self._tasks = [
                asyncio.create_task(sweeps, name="orchestrator:sweep"),
                asyncio.create_task(self.scheduler.run(self._stop), name="automations:cron"),
                asyncio.create_task(self.refresher.run(self._stop), name="flashboards:refresh"),
            ]

    def request_stop(self) -> None:
        """Begin draining (SIGTERM): no more claims, in-flight runs finish or are released."""
        self.runtime.request_stop()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runtime.stop()
        await self.orchestrator.close()
        await close_shared_http_clients()
