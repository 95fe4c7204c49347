"""The one mechanism by which parent runs move: an automation run or an agent run advances when one of its child
ActionRuns ends.

    worker: ActionRun X ends ──commit──▶ Wakeup("finished", X, tenant, parent_run_id=P)      (the runtime)
                                              │ this process hears it at the commit
                                              ▼
    Orchestrator.advance(P)  — the ParentRuns of P's kind (P's id prefix: ``arun``, ``agrun``) —
        one transaction:   state = load(P)   →   plan = plan(state)   →   apply(state, plan)
                           (reads P, its        (a pure function:       (writes it, guarded by the version of P
                            steps, children)     create, skip, finish)   that load read: Stale → load again)
        after the commit:  ask the children the plan ended to stop; advance what it names (the same run for the
                           next chunk of a fan-out, a queued run)

The runtime knows nothing about parents but the child's ``parent_run_id``. A parent is advanced by the process
that ended its child (the ``finished`` wake-up is ``local`` there); other processes hear of it only as waiters do.
Wake-ups are hints: a parent whose process died between the child's commit and the advance is found by the sweep
of any process (at startup, then every ``sweep_interval_s``), and a guarded write makes concurrent advances of one
parent safe (one wins, the other reads again and finds what is left to do).

Advances of one parent in this process never overlap: a request while one runs asks for one more after it, which
sees every child that ended before it starts (a fan-out's items end in bursts: one pass reads them all). The fast
path's pass counts as one (``hold``/``release``), so a request's ``settle`` also waits for it and the pass it asked
for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.errors import Conflict, NotFound
from virtuousai.ids import prefix_of
from virtuousai.runtime.cancellation import cancel_run
from virtuousai.runtime.creation import Lease
from virtuousai.runtime.machine import Stale
from virtuousai.runtime.transition import Finish
from virtuousai.store.drivers import Rows, Wakeup, WakeupHub
from virtuousai.store.engine import transaction
from virtuousai.store.tenant import TenantContext

log = logging.getLogger(__name__)

# A guarded write that keeps losing means another process advances the same parent at the same moment; it will
# have done the work. The sweep is the backstop.
MAX_STALE_RETRIES = 5


@dataclass
class Effects:
    """What an applied plan asks for once its transaction committed."""

    cancel: list[str] = field(default_factory=list)  # child ActionRuns to ask to stop
    advance: list[str] = field(default_factory=list)  # parent runs (this tenant) to advance next
    leased: list[dict[str, Any]] = field(default_factory=list)  # children created RUNNING under the given lease
    # (run id, seconds): advance that run then even if none of its children has ended by then (an agent run's
    # wall-clock limit); (run id, None): it has none any more (it ended, or waits for a human). Kept in this process
    # only: after a restart the sweep finds the run.
    deadline: tuple[str, float | None] | None = None


class KeptStates:
    """The state each parent run's last pass in this process left, so the next pass reads only what can have moved
    since (its children) instead of everything (a 200-step chain would read 200 step rows on each of its 200
    passes). A kept state is used only while the run is still at the version it was kept at (``load`` checks it),
    is taken out while a pass runs (a pass that fails leaves nothing behind) and is bounded (oldest dropped).

    Measured on ``bench/automations.py`` (docs/automations.md): it pays for itself on the chain."""

    def __init__(self, max_runs: int = 1024) -> None:
        self.max_runs = max_runs
        self._states: OrderedDict[str, Any] = OrderedDict()

    def take(self, run_id: str) -> Any | None:
        return self._states.pop(run_id, None)

    def peek(self, run_id: str) -> Any | None:
        return self._states.get(run_id)

    def keep(self, run_id: str, state: Any | None) -> None:
        if state is None or not self.max_runs:
            return
        self._states[run_id] = state
        if len(self._states) > self.max_runs:
            self._states.popitem(last=False)


class ParentRuns(Protocol):
    """One kind of parent run, as the orchestrator drives it."""

    prefix: str  # the id prefix of its runs (``arun``)

    async def load(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        run_id: str,
        kept: Any | None,
        finishing: Finish | None = None,
    ) -> Any | None:
        """The run's state, or None when there is nothing to advance (gone, or terminal). ``kept`` is what this
        process's last pass of the run left (``after``), to be used only if the run is still at its version;
        ``finishing``, a child's outcome written by the same transaction (``fast_path.py``), as if already read."""
        ...

    def plan(self, state: Any) -> Any:
        """What happens next: a pure function of the state."""
        ...

    async def apply(
        self,
        session: AsyncSession,
        state: Any,
        plan: Any,
        lease: Lease | None = None,
        together: tuple[Sequence[Rows], Wakeup] | None = None,
    ) -> Effects:
        """Write the plan in the caller's transaction, guarded by what ``load`` read; ``Stale`` when it moved.
        With ``lease``, a plan that creates exactly one child creates it RUNNING under that lease; ``together``
        (writes, wake-up) go in the same statement, and a write of them that changes nothing is ``Stale`` too."""
        ...

    def sole_child(self, kept: Any | None) -> bool:
        """Whether, in a kept state, the run waits on exactly one child and nothing else (the fast path's case);
        with no kept state (None), whether to try the fast path anyway, reading the run whole."""
        ...

    def after(self, state: Any, plan: Any) -> Any | None:
        """The state as the applied ``plan`` leaves it (for the next ``load``), or None to keep nothing."""
        ...

    async def unfinished(self, session: AsyncSession) -> list[tuple[str, str]]:
        """``(tenant_id, run_id)`` of every run not yet terminal, across tenants (the sweep)."""
        ...


class Orchestrator:
    """One per process, built by its composition (``virtuousai/process.py``) and given to whoever starts or cancels
    a parent run, so every advance of a run in this process goes through the same instance."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        parents: Sequence[ParentRuns],
        *,
        kept_states: KeptStates | None = None,
    ) -> None:
        self.sessions = sessions
        self.parents = {parent.prefix: parent for parent in parents}
        self.running: dict[str, bool] = {}  # parents being advanced here → whether one more advance was asked for
        self._settled: dict[str, asyncio.Event] = {}  # set when the advances of a parent under way here are done
        self.kept = kept_states or KeptStates()
        self.passed: set[str] = set()  # children whose parent's pass the fast path took with their finish
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines: dict[str, asyncio.TimerHandle] = {}  # by run: its pending ``Effects.deadline``
        self._unsubscribe: Callable[[], None] | None = None

    # -- hearing children end -------------------------------------------------------------------------------------

    def listen(self, hub: WakeupHub) -> None:
        self._unsubscribe = hub.subscribe(self._on_wakeup)

    def _on_wakeup(self, wakeup: Wakeup) -> None:
        if wakeup.topic != "finished" or not wakeup.parent_run_id or not wakeup.local:
            return
        if prefix_of(wakeup.parent_run_id) not in self.parents:
            return
        if wakeup.run_id in self.passed:
            self.passed.discard(wakeup.run_id)
            return  # its pass was taken with its finish (``fast_path.py``)
        self._advance_soon(wakeup.tenant_id, wakeup.parent_run_id)

    def _advance_soon(self, tenant_id: str, run_id: str) -> None:
        task = asyncio.create_task(self.advance(tenant_id, run_id), name="orchestrator:advance")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_deadline(self, tenant_id: str, run_id: str, in_s: float | None) -> None:
        """Advance the run in ``in_s`` seconds, in place of the deadline it had here (None: no deadline)."""
        if (previous := self._deadlines.pop(run_id, None)) is not None:
            previous.cancel()
        if in_s is None:
            return

        def due() -> None:
            del self._deadlines[run_id]
            self._advance_soon(tenant_id, run_id)

        self._deadlines[run_id] = asyncio.get_running_loop().call_later(max(0.0, in_s), due)

    async def close(self) -> None:
        """Stop hearing wake-ups and wait for the advances under way (the engine is disposed next)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        for handle in self._deadlines.values():
            handle.cancel()
        self._deadlines.clear()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- advancing ------------------------------------------------------------------------------------------------

    async def advance(self, tenant_id: str, run_id: str) -> None:
        """Bring the run up to date with its children. Never raises for a run that cannot move (logged)."""
        held = self.hold(run_id)
        if held is None:
            self.running[run_id] = True  # one more, once the advance under way is done
            return
        try:
            while True:
                try:
                    await self._advance_once(tenant_id, run_id)
                except Exception:
                    log.exception("parent run %s: advance failed; the sweep will try again", run_id)
                if not self.running[run_id]:
                    return
                self.running[run_id] = False
        finally:
            self._unhold(run_id)
            held.set()

    def hold(self, run_id: str) -> asyncio.Event | None:
        """Mark an advance of the run under way here (``advance``'s own, or the fast path's pass): requests
        meanwhile ask for one more, ``settle`` waits for the event. None if one already is."""
        if run_id in self.running:
            return None
        self.running[run_id] = False
        settled = self._settled[run_id] = asyncio.Event()
        return settled

    def _unhold(self, run_id: str) -> bool:
        """Undo ``hold``; whether one more advance was asked for meanwhile."""
        del self._settled[run_id]
        return self.running.pop(run_id)

    async def release(self, tenant_id: str, run_id: str, held: asyncio.Event) -> None:
        """End the fast path's ``hold``: the one more advance asked for meanwhile runs first, then ``settle``
        returns."""
        asked_again = self._unhold(run_id)
        try:
            if asked_again:
                await self.advance(tenant_id, run_id)
        finally:
            held.set()

    async def settle(self, tenant_id: str, run_id: str) -> None:
        """``advance``, and return only once no advance of the run is under way here: a request that changed the
        run (a decision, a cancel) answers with what its pass did, also when another pass had already begun."""
        await self.advance(tenant_id, run_id)
        settled = self._settled.get(run_id)
        if settled is not None:
            await settled.wait()

    async def _advance_once(self, tenant_id: str, run_id: str) -> None:
        parent = self.parents[prefix_of(run_id)]
        tenant = TenantContext(tenant_id=tenant_id)
        conflict: IntegrityError | None = None
        for _ in range(MAX_STALE_RETRIES):
            try:
                async with transaction(self.sessions) as session:
                    state = await parent.load(session, tenant, run_id, self.kept.take(run_id))
                    if state is None:
                        return
                    planned = parent.plan(state)
                    effects = await parent.apply(session, state, planned)
            except Stale:
                continue  # another advance moved the run since we read it: read it again
            except IntegrityError as error:
                # Another process's pass from the same version committed the same new rows first (a step's or an
                # event's unique key; on PostgreSQL the guarded write's inserts run even when its guard misses):
                # the run moved, read it again. A conflict that is no race repeats, and is logged below.
                conflict = error
                continue
            self.kept.keep(run_id, parent.after(state, planned))
            await self.after_commit(tenant, effects)
            return
        if conflict is not None:
            log.error("parent run %s: a write conflicted %d times", run_id, MAX_STALE_RETRIES, exc_info=conflict)
            return
        log.warning("parent run %s: still moving after %d tries; leaving it to the others", run_id, MAX_STALE_RETRIES)

    async def after_commit(self, tenant: TenantContext, effects: Effects) -> None:
        if effects.deadline is not None:
            self._set_deadline(tenant.tenant_id, *effects.deadline)
        for child_id in effects.cancel:
            async with self.sessions() as session:
                with contextlib.suppress(Conflict, NotFound):  # ended meanwhile: nothing to stop
                    await cancel_run(session, tenant.tenant_id, child_id, requested_by=None)
        for next_run in effects.advance:
            await self.advance(tenant.tenant_id, next_run)

    # -- the sweep ------------------------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Advance every unfinished parent run: a lost wake-up delays a run, never strands it. Returns how many."""
        count = 0
        for parent in self.parents.values():
            async with self.sessions() as session:
                unfinished = await parent.unfinished(session)
            for tenant_id, run_id in unfinished:
                await self.advance(tenant_id, run_id)
            count += len(unfinished)
        return count

    async def run_sweeps(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("parent run sweep failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
