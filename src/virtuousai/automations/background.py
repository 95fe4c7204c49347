"""What automations run inside a process that executes ActionRuns: the engine's ``on_run_finished`` hook, a slow
sweep (at startup, then on a timer) and the cron scheduler. Started next to the runtime's workers by the app's
lifespan and by ``vai worker``; a process without workers starts nothing (it executes nothing either)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from virtuousai.actions.tables import RunOrigin
from virtuousai.automations.engine import AutomationEngine
from virtuousai.automations.scheduler import CronScheduler, SchedulerConfig
from virtuousai.runtime.handoff import LocalHandoff
from virtuousai.runtime.supervisor import Runtime
from virtuousai.store.drivers import Wakeup
from virtuousai.store.drivers.wakeups import PROCESS_ID

log = logging.getLogger(__name__)


class AutomationServices:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # The engine hands new step runs straight to this process's workers when they have a free slot.
        handoff = LocalHandoff(runtime.workers, runtime.settings) if runtime.workers else None
        self.engine = AutomationEngine(runtime.sessions, runtime.registry, handoff)
        config = SchedulerConfig(interval_s=runtime.settings.cron_interval_s)
        self.scheduler = CronScheduler(runtime.sessions, self.engine, config)
        self.sweep_interval_s = runtime.settings.automation_sweep_interval_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self.runtime.workers:
            return
        self.runtime.on_run_finished.append(self.on_run_finished)
        for worker in self.runtime.workers:  # this process advances the automation runs its workers finish
            worker.publish_finishes_as(PROCESS_ID)
            worker.executor.recorder.fused = self.engine.fuse
        self._tasks = [
            asyncio.create_task(self._sweep_loop(), name="automations:sweep"),
            asyncio.create_task(self.scheduler.run(self._stop), name="automations:cron"),
        ]

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError):
            self.runtime.on_run_finished.remove(self.on_run_finished)
        for worker in self.runtime.workers:
            worker.executor.recorder.fused = None
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def on_run_finished(self, finished: Wakeup) -> None:
        """Every process hears every run finish: act only on runs an automation waits on, and without a query when
        the wake-up says whose the run is (the sweep still catches anything a lost wake-up would strand)."""
        if finished.origin and finished.origin != RunOrigin.automation:
            return  # an API, agent, chat or schedule run: no automation waits on it
        if finished.publisher and finished.publisher != PROCESS_ID:
            return  # the process that executed it advances its automation run (the sweep covers one that dies)
        if self.engine.took_pass_for(finished.run_id):
            return  # recorded together with its pass (``AutomationEngine.finish_and_advance``)
        if finished.tenant_id and finished.automation_run_id:
            await self.engine.advance_coalesced(finished.tenant_id, finished.automation_run_id)
        else:
            await self.engine.on_action_run_finished(finished.run_id)  # the publisher did not say: look it up

    async def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.engine.sweep()
            except Exception:
                log.exception("automation sweep failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.sweep_interval_s)
