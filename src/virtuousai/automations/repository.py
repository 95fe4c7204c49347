"""Queries for automations and their versions. Every read starts from ``base_query()`` (this tenant only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.tables import ActionRun, ActionRunEvent
from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.automations.tables import (
    Automation,
    AutomationRun,
    AutomationRunEvent,
    AutomationStepRun,
    AutomationTriggerTick,
    AutomationVersion,
)
from virtuousai.ids import has_prefix
from virtuousai.orgs.tables import Organization
from virtuousai.runtime.states import RunStatus
from virtuousai.store.base import JSONDoc, UTCDateTime
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantRepository


@dataclass(frozen=True)
class StepActionRun:
    """What the engine needs to know of one ActionRun of a step (its output only where the pass reads it)."""

    id: str
    step_key: str | None
    idempotency_key: str | None
    status: RunStatus
    attempt: int
    error: dict[str, Any] | None
    output: Any = None


@dataclass
class StepState:
    """One step row as an engine pass reads and writes it: plain values, not an ORM object, because a pass reads
    every step of the run (a 200-step chain: 200 rows on every pass) and writes back only the ones it moved.

    ``output`` is read only for the steps some expression names (and set when a step completes in the pass)."""

    id: str
    step_key: str
    status: StepStatus
    item_count: int | None
    output: Any
    error: dict[str, Any] | None
    reason: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    changed: bool = False


@dataclass(frozen=True)
class LockedRun:
    """An automation run locked for a pass, with what the pass needs of its organization."""

    run: AutomationRun
    org_settings: dict[str, Any]
    org_running: int  # the organization's RUNNING ActionRuns when the pass began


# What a pass (or a cancel) may change on a run.
_RUN_WRITES = (
    "status",
    "error",
    "updated_at",
    "started_at",
    "finished_at",
    "cancel_requested_at",
    "last_event_seq",
    "template_pins",
)

# What a pass may change on a step (a step it moves is never COMPLETED before, so its stored output is null).
_STEP_WRITES = ("status", "item_count", "output", "error", "reason", "attempts", "started_at", "finished_at")


# ``write_pass`` on PostgreSQL: the steps, both kinds of events and the run row in one statement (data-modifying
# CTEs over arrays), so a pass's writes cost one round trip however much it moved.
_PG_WRITE_PASS = sa.text(
    """
WITH steps AS (
    UPDATE automation_step_runs AS s SET
        status = v.status, item_count = v.item_count, output = CAST(v.output AS jsonb),
        error = CAST(v.error AS jsonb), reason = v.reason, attempts = v.attempts, started_at = v.started_at,
        finished_at = v.finished_at
    FROM unnest(
        CAST(:step_ids AS text[]), CAST(:step_statuses AS text[]), CAST(:step_item_counts AS integer[]),
        CAST(:step_outputs AS text[]), CAST(:step_errors AS text[]), CAST(:step_reasons AS text[]),
        CAST(:step_attempts AS integer[]), CAST(:step_started_ats AS timestamptz[]),
        CAST(:step_finished_ats AS timestamptz[])
    ) AS v(id, status, item_count, output, error, reason, attempts, started_at, finished_at)
    WHERE s.tenant_id = :tenant_id AND s.id = v.id
), run_events AS (
    INSERT INTO automation_run_events (id, tenant_id, automation_run_id, seq, kind, data, created_at)
    SELECT v.id, :tenant_id, :run_id, v.seq, v.kind, CAST(v.data AS jsonb), v.created_at
    FROM unnest(
        CAST(:event_ids AS text[]), CAST(:event_seqs AS integer[]), CAST(:event_kinds AS text[]),
        CAST(:event_data AS text[]), CAST(:event_created_ats AS timestamptz[])
    ) AS v(id, seq, kind, data, created_at)
), action_run_events AS (
    INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
    SELECT v.id, :tenant_id, v.run_id, v.seq, v.kind, CAST(v.data AS jsonb), v.created_at
    FROM unnest(
        CAST(:first_ids AS text[]), CAST(:first_run_ids AS text[]), CAST(:first_seqs AS integer[]),
        CAST(:first_kinds AS text[]), CAST(:first_data AS text[]), CAST(:first_created_ats AS timestamptz[])
    ) AS v(id, run_id, seq, kind, data, created_at)
)
UPDATE automation_runs SET
    status = :status, error = CAST(:error AS jsonb), updated_at = :updated_at, started_at = :started_at,
    finished_at = :finished_at, cancel_requested_at = :cancel_requested_at, last_event_seq = :last_event_seq,
    template_pins = CAST(:template_pins AS jsonb)
WHERE tenant_id = :tenant_id AND id = :run_id
"""
).bindparams(
    *(sa.bindparam(name, type_=UTCDateTime()) for name in ("updated_at", "started_at", "finished_at")),
    sa.bindparam("cancel_requested_at", type_=UTCDateTime()),
)


# ``lock_at``, written out once per dialect: it runs on every step of a chain, and building and compiling the same
# select with the ORM on each call costs more than the round trip itself. SQLite has no row locks: its
# transactions begin IMMEDIATE, one writer at a time.
_LOCK_AT_SQL = """
SELECT r.last_event_seq, o.settings,
       (SELECT count(*) FROM action_runs WHERE tenant_id = :tenant_id AND status = 'RUNNING') AS org_running
FROM automation_runs AS r JOIN organizations AS o ON o.id = r.tenant_id
WHERE r.tenant_id = :tenant_id AND r.id = :run_id
"""
_LOCK_AT = {
    dialect: sa.text(_LOCK_AT_SQL + suffix)
    .bindparams(sa.bindparam("tenant_id", type_=sa.String()), sa.bindparam("run_id", type_=sa.String()))
    .columns(last_event_seq=sa.Integer(), settings=JSONDoc, org_running=sa.Integer())
    for dialect, suffix in (("postgresql", "FOR UPDATE OF r"), ("sqlite", ""))
}


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _pg_pass_params(
    tenant_id: str,
    run: AutomationRun,
    steps: Sequence[StepState],
    events: Sequence[dict[str, Any]],
    action_run_events: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "run_id": run.id,
        "status": run.status.value,
        "error": _json_text(run.error),
        "updated_at": run.updated_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "cancel_requested_at": run.cancel_requested_at,
        "last_event_seq": run.last_event_seq,
        "template_pins": _json_text(run.template_pins),
        "step_ids": [row.id for row in steps],
        "step_statuses": [row.status.value for row in steps],
        "step_item_counts": [row.item_count for row in steps],
        "step_outputs": [_json_text(row.output) for row in steps],
        "step_errors": [_json_text(row.error) for row in steps],
        "step_reasons": [row.reason for row in steps],
        "step_attempts": [row.attempts for row in steps],
        "step_started_ats": [row.started_at for row in steps],
        "step_finished_ats": [row.finished_at for row in steps],
        "event_ids": [e["id"] for e in events],
        "event_seqs": [e["seq"] for e in events],
        "event_kinds": [e["kind"] for e in events],
        "event_data": [_json_text(e["data"]) for e in events],
        "event_created_ats": [e["created_at"] for e in events],
        "first_ids": [e["id"] for e in action_run_events],
        "first_run_ids": [e["run_id"] for e in action_run_events],
        "first_seqs": [e["seq"] for e in action_run_events],
        "first_kinds": [e["kind"] for e in action_run_events],
        "first_data": [_json_text(e["data"]) for e in action_run_events],
        "first_created_ats": [e["created_at"] for e in action_run_events],
    }


def _sql_null_for_none(value: Any) -> Any:
    # Core would store None in a JSON column as the JSON ``null``; the ORM's rows hold SQL NULL there.
    return sa.null() if value is None else value


class AutomationRepository(TenantRepository[Automation]):
    model = Automation

    def live(self) -> sa.Select[tuple[Automation]]:
        return self.base_query().where(Automation.deleted_at.is_(None))

    async def by_ref(self, ref: str) -> Automation | None:
        """``ref`` is an id (``aut_…``) or ``slug:<slug>``; deleted automations are not found."""
        if ref.startswith("slug:"):
            stmt = self.live().where(Automation.slug == ref.removeprefix("slug:"))
        elif has_prefix(ref, "aut"):
            stmt = self.live().where(Automation.id == ref)
        else:
            return None
        result: Automation | None = await self.session.scalar(stmt)
        return result

    async def by_slug_for_update(self, slug: str) -> Automation | None:
        result: Automation | None = await self.session.scalar(
            self.live().where(Automation.slug == slug).with_for_update()
        )
        return result

    async def list_live(self, page: PageRequest) -> PageResult[Automation]:
        return await self.paginate(self.live(), page)


class AutomationVersionRepository(TenantRepository[AutomationVersion]):
    model = AutomationVersion

    async def number(self, automation_id: str, version: int) -> AutomationVersion | None:
        result: AutomationVersion | None = await self.session.scalar(
            self.base_query().where(
                AutomationVersion.automation_id == automation_id, AutomationVersion.version == version
            )
        )
        return result

    async def list_for(self, automation_id: str, page: PageRequest) -> PageResult[AutomationVersion]:
        return await self.paginate(self.base_query().where(AutomationVersion.automation_id == automation_id), page)


class AutomationRunRepository(TenantRepository[AutomationRun]):
    model = AutomationRun

    async def lock(self, run_id: str) -> AutomationRun | None:
        """The run, re-read and locked for this transaction: one engine pass per run at a time."""
        result: AutomationRun | None = await self.session.scalar(
            self.base_query()
            .where(AutomationRun.id == run_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result

    async def lock_for_pass(self, run_id: str) -> LockedRun | None:
        """``lock``, with the organization's settings (the approval policy of the runs the pass may create) and
        its RUNNING ActionRuns (what ``per_org_concurrency`` counts, for the runs the pass hands to a local
        worker) in the same statement, so a pass starts with one round trip."""
        running = (
            sa.select(sa.func.count())
            .where(ActionRun.tenant_id == self.tenant_id, ActionRun.status == RunStatus.RUNNING)
            .scalar_subquery()
        )
        row = (
            await self.session.execute(
                self.base_query()
                .add_columns(Organization.settings, running)
                .join(Organization, Organization.id == AutomationRun.tenant_id)
                .where(AutomationRun.id == run_id)
                .with_for_update(of=AutomationRun)
                .execution_options(populate_existing=True)
            )
        ).first()
        if row is None:
            return None
        # Detached: a pass changes the row in memory and ``write_pass`` stores it, not the session's flush.
        self.session.expunge(row[0])
        return LockedRun(row[0], dict(row[1] or {}), int(row[2]))

    async def lock_at(self, run_id: str, seq: int) -> tuple[dict[str, Any], int] | None:
        """Lock the run if it is still at event ``seq``, with the organization's settings and RUNNING ActionRuns
        (as ``lock_for_pass``); ``None`` if another pass or a cancel moved it since. One statement: the pass of
        ``AutomationEngine.finish_and_advance``, which knows the rest of the run from its last pass."""
        stmt = _LOCK_AT[self.session.get_bind().dialect.name]
        row = (await self.session.execute(stmt, {"tenant_id": self.tenant_id, "run_id": run_id})).first()
        return None if row is None or row[0] != seq else (dict(row[1] or {}), int(row[2]))

    async def pass_view(
        self, run_id: str, read_outputs_of: frozenset[str] | None
    ) -> tuple[list[StepState], dict[str, list[StepActionRun]]]:
        """Every step of the run (``step_states``) and the ActionRuns of its RUNNING ones (``step_action_runs``)."""
        steps = await self.step_states(run_id, read_outputs_of)
        return steps, await self.step_action_runs(run_id, steps)

    async def step_states(self, run_id: str, read_outputs_of: frozenset[str] | None) -> list[StepState]:
        """Every step of the run, in position order.

        Outputs are read only where a pass needs them: steps named in ``read_outputs_of`` (``None``: every step).
        A statement with constant predicates only, like ``step_action_runs``, so the plan is an index lookup
        whatever the planner knows: a join of the two tables on the step key can turn into probing the run's
        ActionRuns once per step (quadratic in a long chain) on tables without statistics yet."""
        step = AutomationStepRun
        if read_outputs_of is None:
            step_output: sa.ColumnElement[Any] = step.output.expression
        elif read_outputs_of:
            step_output = sa.case((step.step_key.in_(sorted(read_outputs_of)), step.output))
        else:
            step_output = sa.null()
        steps_stmt = (
            sa.select(
                step.id,
                step.step_key,
                step.status,
                step.item_count,
                sa.type_coerce(step_output, step.output.type),
                step.error,
                step.reason,
                step.attempts,
                step.started_at,
                step.finished_at,
            )
            .where(step.tenant_id == self.tenant_id, step.automation_run_id == run_id)
            .order_by(step.position)
        )
        return [StepState(*row) for row in (await self.session.execute(steps_stmt)).tuples().all()]

    async def step_action_runs(self, run_id: str, steps: Sequence[StepState]) -> dict[str, list[StepActionRun]]:
        """The ActionRuns of the RUNNING steps (none to read when no step is running), by step key; with its
        output, the finished ActionRun of a single-run step (the step's output when it completes). A
        ``for_each`` step's outputs are read once, when it completes (``step_outputs``)."""
        run = ActionRun
        running = [row.step_key for row in steps if row.status is StepStatus.RUNNING]
        action_runs: dict[str, list[StepActionRun]] = {}
        if not running:
            return action_runs
        single = [row.step_key for row in steps if row.status is StepStatus.RUNNING and row.item_count is None]
        single_output = sa.case((sa.and_(run.step_key.in_(single), run.status == RunStatus.COMPLETED), run.output))
        runs_stmt = (
            sa.select(
                run.id,
                run.step_key,
                run.idempotency_key,
                run.status,
                run.attempt,
                run.error,
                sa.type_coerce(single_output, run.output.type),
            )
            .where(run.tenant_id == self.tenant_id, run.automation_run_id == run_id, run.step_key.in_(running))
            .order_by(run.id)
        )
        for row in (await self.session.execute(runs_stmt)).tuples().all():
            action_runs.setdefault(row[1] or "", []).append(StepActionRun(*row))
        return action_runs

    async def write_pass(
        self,
        run: AutomationRun,
        steps: Sequence[StepState],
        events: Sequence[dict[str, Any]],
        action_run_events: Sequence[dict[str, Any]],
    ) -> None:
        """Store what a pass changed: the run row (detached, so written here), the steps it moved, its events and
        the first events of the ActionRuns it created (inserted before, in the same transaction). One statement on
        PostgreSQL; a few on SQLite, where a statement is a function call, not a round trip."""
        if not events:
            return  # nothing moved (every change appends an event)
        if self.session.get_bind().dialect.name == "postgresql":
            params = _pg_pass_params(self.tenant_id, run, steps, events, action_run_events)
            await self.session.execute(_PG_WRITE_PASS, params)
            return
        table = cast(sa.Table, AutomationRun.__table__)
        await self.session.execute(
            sa.update(table)
            .where(table.c.id == run.id, table.c.tenant_id == self.tenant_id)
            .values({name: _sql_null_for_none(getattr(run, name)) for name in _RUN_WRITES})
        )
        if steps:
            await self.write_steps(steps)
        await self.session.execute(sa.insert(cast(sa.Table, AutomationRunEvent.__table__)), list(events))
        if action_run_events:
            await self.session.execute(sa.insert(cast(sa.Table, ActionRunEvent.__table__)), list(action_run_events))

    async def write_steps(self, steps: Sequence[StepState]) -> None:
        """Store the steps a pass moved, in one statement (executemany: one round trip)."""
        table = cast(sa.Table, AutomationStepRun.__table__)
        stmt = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"), table.c.tenant_id == sa.bindparam("b_tenant_id"))
            .values({name: sa.bindparam(f"b_{name}") for name in _STEP_WRITES})
        )
        params = [
            {"b_id": row.id, "b_tenant_id": self.tenant_id} | {f"b_{n}": getattr(row, n) for n in _STEP_WRITES}
            for row in steps
        ]
        await self.session.execute(stmt, params)

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
            .where(ActionRun.tenant_id == self.tenant_id, ActionRun.automation_run_id == run_id)
            .order_by(ActionRun.id)
            .execution_options(populate_existing=True)
        )
        grouped: dict[str, list[ActionRun]] = {}
        for action_run in (await self.session.scalars(stmt)).all():
            grouped.setdefault(action_run.step_key or "", []).append(action_run)
        return grouped

    async def step_outputs(self, run_id: str, step_key: str) -> dict[str | None, Any]:
        """``{idempotency_key: output}`` of one step's ActionRuns (read once, when the step completes)."""
        stmt = sa.select(ActionRun.idempotency_key, ActionRun.output).where(
            ActionRun.tenant_id == self.tenant_id,
            ActionRun.automation_run_id == run_id,
            ActionRun.step_key == step_key,
        )
        return {key: output for key, output in (await self.session.execute(stmt)).all()}

    async def earlier_active(self, run: AutomationRun) -> bool:
        stmt = self.base_query().where(
            AutomationRun.automation_id == run.automation_id,
            AutomationRun.trigger_key == run.trigger_key,
            AutomationRun.id < run.id,
            AutomationRun.status.in_([AutomationRunStatus.PENDING, AutomationRunStatus.RUNNING]),
        )
        return await self.session.scalar(stmt.limit(1)) is not None

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

    async def list_runs(
        self, page: PageRequest, *, automation_id: str | None = None, status: AutomationRunStatus | None = None
    ) -> PageResult[AutomationRun]:
        stmt = self.base_query()
        if automation_id is not None:
            stmt = stmt.where(AutomationRun.automation_id == automation_id)
        if status is not None:
            stmt = stmt.where(AutomationRun.status == status)
        return await self.paginate(stmt, page)

    async def events_after(self, run_id: str, after_seq: int, limit: int = 500) -> Sequence[AutomationRunEvent]:
        stmt = (
            sa.select(AutomationRunEvent)
            .where(AutomationRunEvent.tenant_id == self.tenant_id, AutomationRunEvent.automation_run_id == run_id)
            .where(AutomationRunEvent.seq > after_seq)
            .order_by(AutomationRunEvent.seq)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()


class EngineLookup:
    """The engine's only queries without a tenant: it is woken by an ActionRun id (the runtime's hook) or sweeps
    all unfinished runs, and acts within each run's own tenant from there (like the run-queue drivers)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def automation_run_of(self, action_run_id: str) -> tuple[str, str] | None:
        """``(tenant_id, automation_run_id)`` of an ActionRun started by an automation step."""
        row = (
            await self.session.execute(
                sa.select(ActionRun.tenant_id, ActionRun.automation_run_id).where(
                    ActionRun.id == action_run_id, ActionRun.automation_run_id.is_not(None)
                )
            )
        ).first()
        return None if row is None or row[1] is None else (str(row[0]), str(row[1]))

    async def unfinished_runs(self, limit: int = 10_000) -> list[tuple[str, str]]:
        stmt = (
            sa.select(AutomationRun.tenant_id, AutomationRun.id)
            .where(AutomationRun.status.in_([AutomationRunStatus.PENDING, AutomationRunStatus.RUNNING]))
            .order_by(AutomationRun.id)
            .limit(limit)
        )
        return [(str(t), str(i)) for t, i in (await self.session.execute(stmt)).all()]


class SchedulerLookup:
    """The scheduler's queries across tenants: which automations have cron triggers, and each trigger's last tick.
    It then acts within each automation's own tenant."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def current_versions(self) -> list[tuple[Automation, AutomationVersion]]:
        """Every live automation with its current version (the caller keeps those with cron triggers)."""
        stmt = (
            sa.select(Automation, AutomationVersion)
            .join(
                AutomationVersion,
                sa.and_(
                    AutomationVersion.automation_id == Automation.id,
                    AutomationVersion.version == Automation.current_version,
                ),
            )
            .where(Automation.deleted_at.is_(None))
            .order_by(Automation.id)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def last_tick(self, automation_id: str, trigger_key: str) -> datetime | None:
        result: datetime | None = await self.session.scalar(
            sa.select(sa.func.max(AutomationTriggerTick.tick)).where(
                AutomationTriggerTick.automation_id == automation_id, AutomationTriggerTick.trigger_key == trigger_key
            )
        )
        if result is not None and result.tzinfo is None:  # max() loses the column type on SQLite
            result = result.replace(tzinfo=UTC)
        return result
