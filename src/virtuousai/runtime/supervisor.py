"""``Runtime``: what one process runs — N workers, one watchdog, one wake-up listener — and the in-process
``on_run_finished`` hooks that automations and agents subscribe to.

Built by the app's lifespan (``create_app(settings, workers=N)``) and by ``vai worker``. With zero workers it still
listens, so ``?wait=`` and the hooks hear about runs finished by other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from virtuousai.actions.registry import KindRegistry, load_registry
from virtuousai.config import Settings
from virtuousai.runtime.watchdog import LeaseWatchdog, WatchdogConfig
from virtuousai.runtime.worker import Worker
from virtuousai.store.drivers import Wakeup, driver_for, hub_for

log = logging.getLogger(__name__)

# Called with the ``finished`` wake-up of every run that reached a terminal state (in this process, or — on
# PostgreSQL — in any): ``run_id``, ``tenant_id``, ``origin`` and ``automation_run_id``, so a hook skips the runs it
# does not wait on without a query (``origin`` is empty when the publisher did not know it: look the run up).
# Delivery is a hint like every wake-up: a subscriber that must not miss one also re-reads the runs it awaits.
RunFinishedHook = Callable[[Wakeup], Awaitable[None]]


class Runtime:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        workers: int = 0,
        concurrency: int | None = None,
        registry: KindRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.driver = driver_for(engine)
        self.hub = hub_for(engine.url)
        self.registry = registry or load_registry(settings.kind_modules)
        self.on_run_finished: list[RunFinishedHook] = []
        self.workers = [
            Worker(
                sessions=sessions,
                driver=self.driver,
                hub=self.hub,
                registry=self.registry,
                settings=settings,
                concurrency=concurrency or settings.worker_concurrency,
            )
            for _ in range(workers)
        ]
        self.watchdog = LeaseWatchdog(
            sessions, self.driver, self.registry, WatchdogConfig(interval_s=settings.heartbeat_interval_s)
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self._unsubscribe = self.hub.subscribe(self._on_wakeup)
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
        if self._unsubscribe is not None:
            self._unsubscribe()
        # Wait for the cancelled hooks to unwind: the caller disposes the engine next, and a hook still holding a
        # connection then would be left awaiting a closed one (on SQLite: forever).
        hooks = list(self._hook_tasks)
        for task in hooks:
            task.cancel()
        await asyncio.gather(*hooks, return_exceptions=True)

    async def wait_stopped(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_wakeup(self, wakeup: Wakeup) -> None:
        if wakeup.topic != "finished" or not self.on_run_finished:
            return
        for hook in list(self.on_run_finished):
            task = asyncio.create_task(self._call_hook(hook, wakeup))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _call_hook(self, hook: RunFinishedHook, finished: Wakeup) -> None:
        try:
            await hook(finished)
        except Exception:
            log.exception("on_run_finished hook %r failed for run %s", hook, finished.run_id)
