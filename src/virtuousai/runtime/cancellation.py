"""Cancelling an ActionRun, whoever asks (the API, a parent run whose step or call ended, an agent run's timeout).

A run that has not started (PENDING, AWAITING_APPROVAL) ends CANCELLED at once. A RUNNING run is asked to stop:
``cancel_requested_at`` is set, a ``cancel_requested`` event appended and a ``cancel`` wake-up sent; its worker trips
the run's cancellation token (cooperative), and abandons it after the grace period. An already CANCELLED run is
left as it is; a COMPLETED or FAILED one is a ``Conflict``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.errors import Conflict, NotFound
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import LeaseLost, append_event, transition
from virtuousai.store.drivers import Wakeup, driver_for_session
from virtuousai.timeutil import utcnow


async def cancel_run(session: AsyncSession, tenant_id: str, run_id: str, *, requested_by: str | None) -> ActionRun:
    """Cancel ``run_id`` (see the module's docstring) and commit; returns the run as it is then."""
    for _ in range(3):  # the run may move between our read and our guarded write; look again
        run = await _fresh(session, tenant_id, run_id)
        now = utcnow()
        try:
            if run.status in (RunStatus.PENDING, RunStatus.AWAITING_APPROVAL):
                error = {"type": "Cancelled", "message": "cancelled on request before it started"}
                await transition(
                    session,
                    run,
                    RunStatus.CANCELLED,
                    values={"cancel_requested_at": now, "error": error},
                    event={"requested_by": requested_by},
                    now=now,
                )
            elif run.status is RunStatus.RUNNING:
                if run.cancel_requested_at is None:
                    await _request_cancel(session, run, now, requested_by)
            elif run.status is RunStatus.CANCELLED:
                return run
            else:
                raise Conflict(
                    f"action run {run_id} already finished ({run.status.value})", run_status=run.status.value
                )
        except LeaseLost:
            await session.rollback()
            continue
        await session.commit()
        return await _fresh(session, tenant_id, run_id)
    raise Conflict(f"action run {run_id} kept changing; try again")


async def _fresh(session: AsyncSession, tenant_id: str, run_id: str) -> ActionRun:
    run: ActionRun | None = await session.scalar(
        sa.select(ActionRun)
        .where(ActionRun.tenant_id == tenant_id, ActionRun.id == run_id)
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFound(f"action run {run_id} not found")
    return run


async def _request_cancel(session: AsyncSession, run: ActionRun, now: datetime, requested_by: str | None) -> None:
    stmt = (
        sa.update(ActionRun)
        .where(ActionRun.tenant_id == run.tenant_id, ActionRun.id == run.id, ActionRun.status == RunStatus.RUNNING)
        .values(cancel_requested_at=sa.func.coalesce(ActionRun.cancel_requested_at, now), updated_at=now)
        .returning(ActionRun.id)
        .execution_options(synchronize_session=False)
    )
    if (await session.execute(stmt)).first() is None:
        raise LeaseLost(run.id)
    await append_event(session, run, "cancel_requested", {"requested_by": requested_by})
    await driver_for_session(session).publish(session, Wakeup("cancel", run.id))
