"""``Runtime``: what one process runs to execute ActionRuns — N workers, one watchdog, one wake-up listener.

Built by the process's composition (``virtuousai/process.py``, for ``vai serve`` and ``vai worker``) with the kinds
and the connection resolver it executes with. With zero workers it still listens, so ``?wait=`` and the parents'
orchestrator hear about runs that other processes moved (``hub``: ``finished`` wake-ups carry the run's parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.runtime.context import ConnectionResolverFactory, SharedResources
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.watchdog import LeaseWatchdog, WatchdogConfig
from virtuousai.runtime.worker import Worker
from virtuousai.store.drivers import driver_for, hub_for

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        registry: KindRegistry,
        connections: ConnectionResolverFactory | None = None,
        workers: int = 0,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.driver = driver_for(engine)
        self.hub = hub_for(engine.url)
        self.registry = registry
        self.shared = SharedResources()  # one per process: every worker's kinds share it
        self.workers = [
            Worker(
                sessions=sessions,
                driver=self.driver,
                hub=self.hub,
                registry=self.registry,
                settings=settings,
                concurrency=concurrency or settings.worker_concurrency,
                connections=connections,
                shared=self.shared,
            )
            for _ in range(workers)
        ]
        self.watchdog = LeaseWatchdog(
            sessions, self.driver, self.registry, WatchdogConfig(interval_s=settings.heartbeat_interval_s)
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._listener = asyncio.create_task(self.driver.listen(self.hub), name="runtime:listener")
        self._tasks = [asyncio.create_task(w.run(), name=f"worker:{w.name}") for w in self.workers]
        if self.workers:
            self._tasks.append(asyncio.create_task(self.watchdog.run(self._stop), name="runtime:watchdog"))

    def request_stop(self) -> None:
        """Begin draining (e.g. on SIGTERM): workers stop claiming and finish or release in-flight runs."""
        self._stop.set()
        for worker in self.workers:
            worker.stop()

    async def stop(self) -> None:
        self.request_stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener
        self.shared.close()

    async def wait_stopped(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
