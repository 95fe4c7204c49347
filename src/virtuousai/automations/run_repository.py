"""Queries for automation runs, their steps and events: the API's reads, and what a pass reads and writes
(``progress.py``). Every read is of one tenant, but ``unfinished`` (the sweep's, across tenants)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa

from virtuousai.automations.plan import Children, ChildRun, RunInfo, StepInfo, item_index
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import AutomationRun, AutomationRunEvent, AutomationStepRun
from virtuousai.orgs.tables import Organization
from virtuousai.runtime.states import ACTIVE, RunStatus
from virtuousai.runtime.tables import ActionRun
from virtuousai.store.drivers import Rows
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantRepository

FAILED_OR_CANCELLED = (RunStatus.FAILED, RunStatus.CANCELLED)
ACTIVE_STATUSES = sorted(ACTIVE)

# The statements every pass runs, built once (building and keying a select costs more than its round trip).
_OF_STEP = (
    ActionRun.tenant_id == sa.bindparam("tenant_id"),
    ActionRun.parent_run_id == sa.bindparam("parent_run_id"),
    ActionRun.step_key == sa.bindparam("step_key"),
)
_ACTIVE = sa.select(ActionRun.id).where(*_OF_STEP, ActionRun.status.in_(ACTIVE_STATUSES))
_ANY_ACTIVE = _ACTIVE.limit(1)
_COUNT_ACTIVE = sa.select(sa.func.count()).select_from(_ACTIVE.subquery())
_ANY_FAILED = sa.select(ActionRun.id).where(*_OF_STEP, ActionRun.status.in_(FAILED_OR_CANCELLED)).limit(1)
_CHILDREN = sa.select(
    ActionRun.id,
    ActionRun.idempotency_key,
    ActionRun.status,
    ActionRun.attempt,
    ActionRun.error,
    sa.type_coerce(sa.case((ActionRun.status == RunStatus.COMPLETED, ActionRun.output)), ActionRun.output.type),
).where(*_OF_STEP)
_RUN_COLUMNS = (
    AutomationRun.id,
    AutomationRun.tenant_id,
    AutomationRun.automation_id,
    AutomationRun.status,
    AutomationRun.params,
    AutomationRun.trigger,
    AutomationRun.trigger_key,
    AutomationRun.created_at,
    AutomationRun.started_at,
    AutomationRun.cancel_requested_at.is_not(None),
    AutomationRun.template_pins,
    AutomationRun.last_event_seq,
    AutomationRun.version_id,
    Organization.settings,
)
# The run, its organization's settings and the ActionRuns of the given single-run steps, in one statement: what a
# pass of a run whose steps it keeps (a chain) reads. One row per ActionRun (the run's columns repeated), or one
# with NULL ActionRun columns when there is none.
_child = sa.orm.aliased(ActionRun)
_RUN_INFO = (
    sa.select(
        *_RUN_COLUMNS,
        _child.step_key,
        _child.id,
        _child.idempotency_key,
        _child.status,
        _child.attempt,
        _child.error,
        sa.type_coerce(sa.case((_child.status == RunStatus.COMPLETED, _child.output)), _child.output.type),
    )
    .join(Organization, Organization.id == AutomationRun.tenant_id)
    .outerjoin(
        _child,
        sa.and_(
            _child.tenant_id == AutomationRun.tenant_id,
            _child.parent_run_id == AutomationRun.id,
            _child.step_key.in_(sa.bindparam("steps", expanding=True)),
        ),
    )
    .where(AutomationRun.tenant_id == sa.bindparam("tenant_id"), AutomationRun.id == sa.bindparam("run_id"))
)


class AutomationRunRepository(TenantRepository[AutomationRun]):
    model = AutomationRun

    # -- the API's reads ------------------------------------------------------------------------------------------

    async def get_fresh(self, run_id: str) -> AutomationRun | None:
        result: AutomationRun | None = await self.session.scalar(
            self.base_query().where(AutomationRun.id == run_id).execution_options(populate_existing=True)
        )
        return result

    async def steps(self, run_id: str) -> Sequence[AutomationStepRun]:
        stmt = (
            sa.select(AutomationStepRun)
            .where(AutomationStepRun.tenant_id == self.tenant_id, AutomationStepRun.automation_run_id == run_id)
            .order_by(AutomationStepRun.position)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).all()

    async def action_runs_by_step(self, run_id: str) -> dict[str, list[ActionRun]]:
        stmt = (
            sa.select(ActionRun)
            .where(ActionRun.tenant_id == self.tenant_id, ActionRun.parent_run_id == run_id)
            .order_by(ActionRun.id)
            .execution_options(populate_existing=True)
        )
        grouped: dict[str, list[ActionRun]] = {}
        for action_run in (await self.session.scalars(stmt)).all():
            grouped.setdefault(action_run.step_key or "", []).append(action_run)
        return grouped

    async def list_runs(
        self, page: PageRequest, *, automation_id: str | None = None, status: AutomationRunStatus | None = None
    ) -> PageResult[AutomationRun]:
        stmt = self.base_query()
        if automation_id is not None:
            stmt = stmt.where(AutomationRun.automation_id == automation_id)
        if status is not None:
            stmt = stmt.where(AutomationRun.status == status)
        return await self.paginate(stmt, page)

    async def step_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """The steps of each run by status (a page of runs in one grouped query)."""
        if not run_ids:
            return {}
        stmt = (
            sa.select(AutomationStepRun.automation_run_id, AutomationStepRun.status, sa.func.count())
            .where(AutomationStepRun.tenant_id == self.tenant_id, AutomationStepRun.automation_run_id.in_(run_ids))
            .group_by(AutomationStepRun.automation_run_id, AutomationStepRun.status)
        )
        counts: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        for run_id, status, count in (await self.session.execute(stmt)).tuples():
            counts[run_id][StepStatus(status).value] = int(count)
        return counts

    async def events_after(self, run_id: str, after_seq: int, limit: int = 500) -> Sequence[AutomationRunEvent]:
        stmt = (
            sa.select(AutomationRunEvent)
            .where(AutomationRunEvent.tenant_id == self.tenant_id, AutomationRunEvent.automation_run_id == run_id)
            .where(AutomationRunEvent.seq > after_seq)
            .order_by(AutomationRunEvent.seq)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    # -- cron -----------------------------------------------------------------------------------------------------

    async def active_for_trigger(self, automation_id: str, trigger_key: str) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(AutomationRun)
            .where(
                AutomationRun.tenant_id == self.tenant_id,
                AutomationRun.automation_id == automation_id,
                AutomationRun.trigger_key == trigger_key,
                AutomationRun.status.in_([AutomationRunStatus.PENDING, AutomationRunStatus.RUNNING]),
            )
        )
        return int(await self.session.scalar(stmt) or 0)

    async def earlier_active(self, run: RunInfo) -> bool:
        """Whether a run of the same cron trigger, started before this one, is still going."""
        stmt = self.base_query().where(
            AutomationRun.automation_id == run.automation_id,
            AutomationRun.trigger_key == run.trigger_key,
            AutomationRun.id < run.id,
            AutomationRun.status.in_([AutomationRunStatus.PENDING, AutomationRunStatus.RUNNING]),
        )
        return await self.session.scalar(stmt.limit(1)) is not None

    async def oldest_pending(self, automation_id: str) -> str | None:
        stmt = (
            sa.select(AutomationRun.id)
            .where(
                AutomationRun.tenant_id == self.tenant_id,
                AutomationRun.automation_id == automation_id,
                AutomationRun.status == AutomationRunStatus.PENDING,
            )
            .order_by(AutomationRun.id)
            .limit(1)
        )
        result: str | None = await self.session.scalar(stmt)
        return result

    # -- what a pass reads ----------------------------------------------------------------------------------------

    async def run_info(
        self, run_id: str, single_steps: Sequence[str] = ()
    ) -> tuple[RunInfo, str, dict[str, Any], dict[str, tuple[ChildRun, ...]]] | None:
        """The run as a plan sees it, its version id, its organization's settings, and the ActionRuns of the given
        single-run steps (each step's, possibly none): one row, or a few, and no ORM object (every pass reads it)."""
        params = {"tenant_id": self.tenant_id, "run_id": run_id, "steps": list(single_steps)}
        rows = (await self.session.execute(_RUN_INFO, params)).tuples().all()
        if not rows:
            return None
        first = rows[0]
        children: dict[str, tuple[ChildRun, ...]] = {key: () for key in single_steps}
        for row in rows:
            step_key, child_id, key, status, attempt, error, output = row[14:]
            if child_id is not None:
                children[step_key] += (ChildRun(child_id, item_index(key), status, attempt, error, output),)
        return RunInfo(*first[:12]), first[12], dict(first[13] or {}), children

    async def step_infos(self, run_id: str, read_outputs_of: frozenset[str] | None) -> list[StepInfo]:
        """Every step of the run, in topological order; outputs only of the steps in ``read_outputs_of`` (``None``:
        every step's)."""
        step = AutomationStepRun
        if read_outputs_of is None:
            output: sa.ColumnElement[Any] = step.output.expression
        elif read_outputs_of:
            output = sa.case((step.step_key.in_(sorted(read_outputs_of)), step.output))
        else:
            output = sa.null()
        stmt = (
            sa.select(
                step.id,
                step.step_key,
                step.status,
                step.item_count,
                step.launched,
                sa.type_coerce(output, step.output.type),
                step.error,
                step.started_at,
            )
            .where(step.tenant_id == self.tenant_id, step.automation_run_id == run_id)
            .order_by(step.position)
        )
        return [StepInfo(*row) for row in (await self.session.execute(stmt)).tuples().all()]

    @staticmethod
    def single_children(ended: tuple[ChildRun, ...]) -> Children:
        """What the one ActionRun (or none yet) of a single-run step is doing."""
        if not ended or ended[0].status in ACTIVE:
            return Children(active=1 if ended else 0, failed=False)
        return Children(active=0, failed=ended[0].status in FAILED_OR_CANCELLED, ended=ended)

    async def children(self, run_id: str, step: StepInfo, *, count_active: bool) -> Children:
        """What the ActionRuns of a RUNNING step are doing, in a few index seeks (``ix_action_runs_parent``);
        every one of them is read only once they have all ended (``count_active``: count the active ones exactly,
        for ``max_parallel``, instead of asking whether there is one)."""
        of_step = {"tenant_id": self.tenant_id, "parent_run_id": run_id, "step_key": step.key}
        if step.item_count is None:  # one ActionRun at most: read it
            return self.single_children(await self._ended(of_step))
        if count_active:
            active = int(await self.session.scalar(_COUNT_ACTIVE, of_step) or 0)
        else:
            active = 1 if await self.session.scalar(_ANY_ACTIVE, of_step) is not None else 0
        failed = await self.session.scalar(_ANY_FAILED, of_step) is not None
        if active or (step.launched < step.item_count and not failed):
            return Children(active=active, failed=failed)
        return Children(active=0, failed=failed, ended=await self._ended(of_step))

    async def _ended(self, of_step: dict[str, Any]) -> tuple[ChildRun, ...]:
        rows = (await self.session.execute(_CHILDREN, of_step)).tuples().all()
        children = [
            ChildRun(id, item_index(key), status, attempt, error, output)
            for id, key, status, attempt, error, output in rows
        ]
        return tuple(sorted(children, key=lambda child: child.index))

    async def active_children(self, run_id: str, step_keys: Sequence[str]) -> list[str]:
        """The ActionRuns of these steps that are not terminal yet (to be asked to stop)."""
        if not step_keys:
            return []
        stmt = sa.select(ActionRun.id).where(
            ActionRun.tenant_id == self.tenant_id,
            ActionRun.parent_run_id == run_id,
            ActionRun.step_key.in_(list(step_keys)),
            ActionRun.status.in_(ACTIVE_STATUSES),
        )
        return list((await self.session.scalars(stmt)).all())

    async def holders(self, keys: Sequence[str]) -> dict[str, str]:
        """``{idempotency key: id of the run holding it}``."""
        stmt = sa.select(ActionRun.idempotency_key, ActionRun.id).where(
            ActionRun.tenant_id == self.tenant_id, ActionRun.idempotency_key.in_(list(keys))
        )
        return {str(key): str(run_id) for key, run_id in (await self.session.execute(stmt)).tuples().all()}

    # -- what a pass writes, all in one ``RunQueueDriver.write_together`` ------------------------------------------

    def run_update(self, run_id: str, *, seen_seq: int, values: dict[str, Any]) -> Rows:
        """The run's new state, only if it is still at the version the pass read (else it updates nothing)."""
        table = cast(sa.Table, AutomationRun.__table__)
        row = {"tenant_id": self.tenant_id, "id": run_id, **values}
        return Rows(table, [row], key=("tenant_id", "id"), guard={"last_event_seq": seen_seq})

    def step_updates(self, rows: Sequence[dict[str, Any]]) -> Rows:
        table = cast(sa.Table, AutomationStepRun.__table__)
        return Rows(table, [{"tenant_id": self.tenant_id, **row} for row in rows], key=("tenant_id", "id"))

    @staticmethod
    def inserts(model: Any, rows: Sequence[dict[str, Any]]) -> Rows:
        return Rows(cast(sa.Table, model.__table__), rows)


async def unfinished_runs(session: Any, limit: int = 10_000) -> list[tuple[str, str]]:
    """``(tenant_id, run_id)`` of every automation run not yet terminal, across tenants (the sweep's)."""
    stmt = (
        sa.select(AutomationRun.tenant_id, AutomationRun.id)
        .where(AutomationRun.status.in_([AutomationRunStatus.PENDING, AutomationRunStatus.RUNNING]))
        .order_by(AutomationRun.id)
        .limit(limit)
    )
    return [(str(t), str(i)) for t, i in (await session.execute(stmt)).all()]


__all__ = ["AutomationRunRepository", "StepStatus", "unfinished_runs"]
