"""The fast path of a chain: a child's finish, its parent's next pass and the next child's start in one transaction.

The general path of one chain step costs a transaction to record the finish, one for the parent's pass, one for a
worker to claim the new child, and a wake-up between each. Here, when the worker that finishes a child runs in a
process whose orchestrator advanced the child's parent last (its kept state) and the parent waits on that child
alone — or, for a kind of parent whose runs mostly wait on one child at a time (an agent run), with no kept state
here yet — the worker's executor offers the finish to ``FastPath.finish``, which in one transaction

1. takes the parent's pass — the same ``load`` (with a kept state, one statement: the run row, no step rows),
   ``plan`` and ``apply`` as ``Orchestrator.advance``, with the child's outcome as it is about to be written;
2. writes the finish (fenced by the worker's lease token, the child's RUNNING status and its event counter) in the
   same statement as the pass (guarded by the run's version): if either guard fails, nothing is written;
3. creates the parent's next child, if the pass creates exactly one that needs no approval, RUNNING under the
   finishing worker's lease: the worker runs it next in the slot the finished child frees (no claim, and the
   organization's count of running runs does not change).

Anything it cannot be sure of steps aside before writing anything (another advance of the parent under way here,
``sole_child`` says no: no kept state, more than one active child) or rolls back to the general path (the parent
moved meanwhile): the finish is then recorded alone by the group commit, and its wake-up brings the general pass.

Measured on ``bench/automations.py`` (docs/automations.md, "Fast paths"): on this machine every statement costs
about half a millisecond of system time, and a chain step here is 4 of them (BEGIN, one read, one write, COMMIT)
instead of 9 and three wake-ups.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from virtuousai.ids import prefix_of
from virtuousai.orchestration.orchestrator import Effects, Orchestrator
from virtuousai.runtime.creation import Lease
from virtuousai.runtime.machine import Stale
from virtuousai.runtime.recorder import RecordedWithParent
from virtuousai.runtime.transition import Finish, finish_as_rows
from virtuousai.store.drivers import ClaimedRun, claimed_from_mapping
from virtuousai.store.engine import transaction
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


class FastPath:
    def __init__(self, orchestrator: Orchestrator, *, lease_s: float) -> None:
        self.orchestrator = orchestrator
        self.lease_s = lease_s

    async def finish(self, finish: Finish, worker: str) -> RecordedWithParent | None:
        """Record ``finish`` with its parent's pass, or return None (nothing written) for the group commit."""
        orchestrator, child = self.orchestrator, finish.run
        parent_id = child.parent_run_id or ""
        parent = orchestrator.parents.get(prefix_of(parent_id))
        kept = orchestrator.kept.peek(parent_id)
        if parent is None or finish.event_seq is None or not parent.sole_child(kept):
            return None
        # Wake-ups for the parent meanwhile ask for one more advance; a request's settle waits for both.
        held = orchestrator.hold(parent_id)
        if held is None:
            return None  # another advance of the parent is under way here
        tenant = TenantContext(tenant_id=child.tenant_id)
        try:
            try:
                recorded, effects, next_run = await self._together(finish, worker, tenant)
            except Stale:
                return None  # the parent or the child moved: nothing was written, the group commit records it
            except Exception:
                log.warning("run %s: finish with its parent's pass failed; recording it alone", child.id, exc_info=True)
                return None
            if effects is not None:
                await orchestrator.after_commit(tenant, effects)
            return RecordedWithParent(recorded, next_run)
        finally:
            await orchestrator.release(tenant.tenant_id, parent_id, held)

    async def _together(
        self, finish: Finish, worker: str, tenant: TenantContext
    ) -> tuple[bool, Effects | None, ClaimedRun | None]:
        """The finish, the pass and the next child in one transaction; ``Stale`` (nothing written) when the parent
        or the child moved since they were read: a lost lease, a cancel request, another pass."""
        orchestrator, child = self.orchestrator, finish.run
        parent_id = child.parent_run_id or ""
        parent = orchestrator.parents[prefix_of(parent_id)]
        now = utcnow()
        try:
            async with transaction(orchestrator.sessions) as session:
                state = await parent.load(
                    session, tenant, parent_id, orchestrator.kept.take(parent_id), finishing=finish
                )
                if state is None:
                    raise Stale(f"parent run {parent_id} ended")  # the finish then goes the usual way
                planned = parent.plan(state)
                lease = Lease(worker, now + timedelta(seconds=self.lease_s))
                together = finish_as_rows(finish, now=now)
                effects = await parent.apply(session, state, planned, lease=lease, together=together)
                # Before the commit, which on SQLite delivers the child's finished wake-up: its pass is this one.
                orchestrator.passed.add(child.id)
        except BaseException:
            orchestrator.passed.discard(child.id)
            raise
        orchestrator.kept.keep(parent_id, parent.after(state, planned))
        next_run = claimed_from_mapping(effects.leased[0]) if effects.leased else None
        return True, effects, next_run
