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

Each recorded outcome publishes its wake-up at the batch's commit (``finished`` for a terminal run, with its parent:
the parent's orchestrator in this process hears it then; ``enqueued`` for a retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.runtime.transition import Finish, finish_runs
from virtuousai.store.drivers import ClaimedRun, RunQueueDriver
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedWithParent:
    """A finish its parent's orchestrator recorded together with the parent's next pass (``ParentFinisher``)."""

    recorded: bool  # False: the lease was lost and nothing changed
    next_run: ClaimedRun | None = None  # the parent's next child, RUNNING under this worker's lease, for this slot


# ``(finish, worker name)`` → ``None`` when it cannot (the finish then takes the group commit), else what it did.
# Set by the process's composition: the fast path of parent runs (``orchestration/fast_path.py``). The runtime knows
# of it only that a run with a parent may be finished this way.
ParentFinisher = Callable[[Finish, str], Awaitable[RecordedWithParent | None]]


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

    async def record(self, finish: Finish) -> bool:
        """Record one outcome (fenced by its token); False when the lease was lost and nothing changed."""
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
            moved = await finish_runs(session, [p.finish for p in batch], now=utcnow())
        for pending in batch:
            if not pending.recorded.done():
                pending.recorded.set_result(pending.finish.run.id in moved)


def _settle_error(pending: _Pending, exc: BaseException) -> None:
    if not pending.recorded.done():
        pending.recorded.set_exception(exc)
        pending.recorded.exception()  # retrieved: its executor may have been cancelled meanwhile (the shield)
