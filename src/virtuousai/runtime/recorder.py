"""``OutcomeRecorder``: group commit for the outcomes of one worker's runs.

Recording an outcome is a transaction of its own (BEGIN, the guarded UPDATE, the event INSERT, the NOTIFY,
COMMIT): round trips, not work. Runs that finish close together share it. The first outcome is written at once;
outcomes that arrive while a write is in flight wait for it to end and then go out together in the next one, so a
lone run waits for nothing and a busy worker commits once per batch instead of once per run (the classic group
commit of database logs). Fencing is unchanged: every row carries its own ``lease_token`` guard, and a run that
fails its guard is reported lost on its own while the others of the batch are recorded.

If a batch's transaction fails (a database error, not a lost lease), its outcomes are retried one by one, so one
bad row cannot take its neighbours down; an outcome that still fails raises to its executor, and the run's lease
runs out for the watchdog as before.

With a ``publisher`` (``Worker.publish_finishes_as``), the ``finished`` wake-ups of the batch name this process and
are delivered to its own hub as soon as the batch commits — on PostgreSQL without waiting for the ``NOTIFY`` to come
back through the listener, which then drops that echo.

An automation step's outcome may take another way: with ``fused`` set (the automation engine of this process), it
is first offered to ``AutomationEngine.fuse``, which records it in the same transaction as the pass it triggers
when it can, and otherwise leaves it to the group commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.runtime.transition import Finish, finish_runs
from virtuousai.store.drivers import RunQueueDriver, Wakeup, WakeupHub
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)

# ``(finish, publisher)`` → None at once if it does not apply, else what records the outcome (→ recorded; None
# when it stepped aside after all). See ``OutcomeRecorder.fused``.
FusedRecorder = Callable[[Finish, str], Awaitable[bool | None] | None]


@dataclass
class _Pending:
    finish: Finish
    recorded: asyncio.Future[bool]


class OutcomeRecorder:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], driver: RunQueueDriver, *, max_batch: int = 100
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.sessions = sessions
        self.driver = driver
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self.publisher = ""  # set by ``Worker.publish_finishes_as``
        self.local_hub: WakeupHub | None = None
        # Set by the automation engine of this process (``background.py``): records an automation step's outcome
        # together with the pass it triggers, or returns None to leave it to the group commit.
        self.fused: FusedRecorder | None = None

    async def record(self, finish: Finish) -> bool:
        """Record one outcome (fenced by its token); False when the lease was lost and nothing changed."""
        fusing = self.fused(finish, self.publisher) if self.fused and finish.run.automation_run_id else None
        if fusing is not None:
            fused = await asyncio.shield(fusing)  # as below: once begun, it runs to its end
            if fused is not None:
                if fused:
                    self._publish_locally([finish])
                return fused
        recorded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(finish, recorded))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="outcome-recorder")
        # Shielded: a run task cancelled while its outcome is being written must not tear the shared batch apart.
        return await asyncio.shield(recorded)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle_error(batch[0], exc)
                    continue
                log.warning("group commit of %d outcomes failed (%s); recording them one by one", len(batch), exc)
                for one in batch:
                    try:
                        await self._write([one])
                    except Exception as single_exc:
                        _settle_error(one, single_exc)

    async def _write(self, batch: list[_Pending]) -> None:
        async with self.driver.batch_session(self.sessions) as session:
            moved = await finish_runs(session, [p.finish for p in batch], now=utcnow(), publisher=self.publisher)
        self._publish_locally([p.finish for p in batch if p.finish.run.id in moved])
        for pending in batch:
            if not pending.recorded.done():
                pending.recorded.set_result(pending.finish.run.id in moved)

    def _publish_locally(self, committed: list[Finish]) -> None:
        """Hooks and waiters of this process hear of the committed finishes now, not a ``NOTIFY`` round trip
        later (the listener drops the echo; on SQLite the driver publishes at commit itself)."""
        if not (self.publisher and self.local_hub is not None and self.driver.local_echo):
            return
        for finish in committed:
            run = finish.run
            if finish.to.is_terminal:
                self.local_hub.publish(
                    Wakeup(
                        "finished",
                        run.id,
                        tenant_id=run.tenant_id,
                        origin=run.origin,
                        automation_run_id=run.automation_run_id or "",
                        publisher=self.publisher,
                    )
                )


def _settle_error(pending: _Pending, exc: BaseException) -> None:
    if not pending.recorded.done():
        pending.recorded.set_exception(exc)
        pending.recorded.exception()  # retrieved: its executor may have been cancelled meanwhile (the shield)
