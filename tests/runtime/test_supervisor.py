"""The process runtime executes runs of every origin and tells this process's subscribers, at the commit, that a
run ended and which parent run it belongs to: all the runtime knows of parents."""

from __future__ import annotations

import asyncio

from tests.runtime.conftest import Harness
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.supervisor import Runtime
from virtuousai.runtime.tables import RunOrigin
from virtuousai.store.drivers import Wakeup


async def test_a_child_run_ending_is_published_with_its_parent(harness: Harness) -> None:
    runtime = Runtime(harness.engine, harness.sessions, harness.settings, registry=harness.registry, workers=1)
    finished: asyncio.Queue[Wakeup] = asyncio.Queue()
    unsubscribe = runtime.hub.subscribe(lambda w: finished.put_nowait(w) if w.topic == "finished" else None)
    await runtime.start()
    try:
        snapshot = {"template_id": "tpl_1", "version": 3}
        run_id = await harness.create(
            "echo",
            {"step": "extract"},
            origin="automation",
            parent_run_id="arun_123",
            step_key="extract",
            template_snapshot=snapshot,
        )
        heard = await asyncio.wait_for(finished.get(), timeout=10)
        assert (heard.run_id, heard.tenant_id, heard.parent_run_id, heard.local) == (
            run_id,
            harness.tenant.tenant_id,
            "arun_123",
            True,
        )
        run = await harness.get(run_id)
        assert run.status is RunStatus.COMPLETED
        assert (run.origin, run.parent_run_id, run.step_key) == (RunOrigin.automation, "arun_123", "extract")
        assert run.template_snapshot == snapshot
    finally:
        unsubscribe()
        await runtime.stop()
