"""The process runtime: in-process workers, and the on_run_finished hooks that automations and agents use to
learn that a run they created (with their own origin) has finished."""

from __future__ import annotations

import asyncio

from tests.runtime.conftest import Harness
from virtuousai.actions.tables import RunOrigin
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.supervisor import Runtime


async def test_on_run_finished_hooks_hear_of_runs_created_by_any_origin(harness: Harness) -> None:
    runtime = Runtime(harness.engine, harness.sessions, harness.settings, workers=1)
    finished: asyncio.Queue[str] = asyncio.Queue()

    async def hook(run_id: str) -> None:
        await finished.put(run_id)

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
        assert await asyncio.wait_for(finished.get(), timeout=10) == run_id
        run = await harness.get(run_id)
        assert run.status is RunStatus.COMPLETED
        assert (run.origin, run.automation_run_id, run.step_key) == (RunOrigin.automation, "arun_123", "extract")
        assert run.template_snapshot == snapshot
    finally:
        await runtime.stop()
