"""The process runtime: in-process workers, and the on_run_finished hooks that automations and agents use to
learn that a run they created (with their own origin) has finished."""

from __future__ import annotations

import asyncio

from tests.runtime.conftest import Harness
from virtuousai.actions.tables import RunOrigin
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.supervisor import Runtime
from virtuousai.store.drivers import Wakeup


async def test_on_run_finished_hooks_hear_of_runs_created_by_any_origin(harness: Harness) -> None:
    runtime = Runtime(harness.engine, harness.sessions, harness.settings, workers=1)
    finished: asyncio.Queue[Wakeup] = asyncio.Queue()

    async def hook(wakeup: Wakeup) -> None:
        await finished.put(wakeup)

    runtime.on_run_finished.append(hook)
    await runtime.start()
    try:
        snapshot = {"template_id": "tpl_1", "version": 3}
        run_id = await harness.create(
            "echo",
            {"step": "extract"},
            origin="automation",
            automation_run_id="arun_123",
            step_key="extract",
            template_snapshot=snapshot,
        )
        # The wake-up says whose the run is, so hooks can skip runs they do not wait on without a query.
        heard = await asyncio.wait_for(finished.get(), timeout=10)
        assert (heard.run_id, heard.tenant_id, heard.origin, heard.automation_run_id) == (
            run_id,
            harness.tenant.tenant_id,
            "automation",
            "arun_123",
        )
        run = await harness.get(run_id)
        assert run.status is RunStatus.COMPLETED
        assert (run.origin, run.automation_run_id, run.step_key) == (RunOrigin.automation, "arun_123", "extract")
        assert run.template_snapshot == snapshot
    finally:
        await runtime.stop()
