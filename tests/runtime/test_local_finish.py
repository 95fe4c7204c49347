"""Each ``finished`` wake-up reaches the process that recorded the finish at its commit, naming that process, and
exactly once: on PostgreSQL the ``NOTIFY`` echo that comes back through the listener is dropped."""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers import eventually
from tests.runtime.conftest import Harness
from virtuousai.runtime.states import RunStatus
from virtuousai.store.drivers import Wakeup, hub_for
from virtuousai.store.drivers.wakeups import PROCESS_ID
from virtuousai.store.engine import transaction


async def test_a_finish_is_heard_once_in_its_process_with_its_publisher(harness: Harness) -> None:
    hub = hub_for(harness.engine.url)
    heard: list[Wakeup] = []
    unsubscribe = hub.subscribe(heard.append)
    listener: asyncio.Task[None] | None = None
    try:
        harness.start_worker()
        # No listener yet: on PostgreSQL only the recorder's own delivery can make this process hear the finish.
        first = await harness.create("echo", {"n": 1})
        await harness.wait_for(first, {RunStatus.COMPLETED})

        async def heard_finish_of(run_id: str) -> list[Wakeup]:
            return [w for w in heard if w.topic == "finished" and w.run_id == run_id]

        [finished] = await eventually(lambda: heard_finish_of(first), what="the finish, without a listener")
        assert (finished.publisher, finished.tenant_id) == (PROCESS_ID, harness.tenant.tenant_id)

        listener = asyncio.create_task(harness.driver.listen(hub))
        if harness.driver.dialect == "postgresql":

            async def listening() -> bool:
                return any(w.topic == "enqueued" and not w.run_id for w in heard)  # the listener's first wake-up

            await eventually(listening, what="the listener to connect")
        second = await harness.create("echo", {"n": 2})
        await harness.wait_for(second, {RunStatus.COMPLETED})
        # A marker published after the finish committed: once it is heard, the finish's NOTIFY echo (sent earlier
        # on the same channel) would have been heard too.
        async with transaction(harness.sessions) as session:
            await harness.driver.publish(session, Wakeup("cancel", "run_marker"))

        async def marker_heard() -> bool:
            return any(w.run_id == "run_marker" for w in heard)

        await eventually(marker_heard, what="the marker wake-up")
        assert len(await heard_finish_of(second)) == 1  # once: the echo was dropped
    finally:
        unsubscribe()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
