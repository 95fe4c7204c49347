"""The ActionRuns of a step, created the way an engine pass needs: all of a step's new runs in one INSERT.

``ActionRunService.create`` stores one run per call and, for an idempotency key, first SELECTs the key (with an
autoflush of everything the pass staged). The engine creates runs only while it holds the automation run's lock,
and reads the runs of its running steps under that lock, so it never asks for a key twice; the unique
``(tenant_id, idempotency_key)`` index stays the guard, as ``INSERT … ON CONFLICT DO NOTHING``. A key found taken
can only be held by a run the automation did not create (someone used the same key through the API): unlike
``ActionRunService.create``, which answers such a request with the earlier run, the engine fails the step, because
a run that is not the automation run's own would never be found as its step again.

The rows are the ones ``ActionRunService.create`` stores for ``origin="automation"``, validated the same way (the
kind exists, the inputs fit its schema and are finite JSON, the organization's approval policy decides PENDING or
AWAITING_APPROVAL), with their first status event (written with the rest of the pass), and one ``enqueued``
wake-up for the whole pass at its commit.
A run the engine hands to a worker of its own process is created RUNNING instead (``leased_to``; see
``runtime/handoff.py``): the same INSERT, its first event the RUNNING one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import requires_approval
from virtuousai.actions.registry import KindRegistry, UnknownKind
from virtuousai.actions.service import inputs_hash
from virtuousai.actions.tables import ActionRun, RunOrigin
from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.transition import STATUS_EVENT
from virtuousai.store.drivers import Wakeup, driver_for_session


@dataclass(frozen=True)
class StepRunRequest:
    """What one item of a step asks for (rendered inputs; limits and snapshot from the step or its template)."""

    kind: str
    inputs: dict[str, Any]
    priority: int = 0
    timeout_s: float | None = None
    max_attempts: int | None = None
    template_snapshot: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewStepRun:
    """A validated ``action_runs`` row, ready to insert."""

    row: dict[str, Any]
    event_extra: dict[str, Any] = field(default_factory=dict)  # what the first status event adds (who leased it)

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def idempotency_key(self) -> str:
        return str(self.row["idempotency_key"])

    @property
    def status(self) -> RunStatus:
        status: RunStatus = self.row["status"]
        return status


def new_step_run(
    registry: KindRegistry,
    request: StepRunRequest,
    *,
    tenant_id: str,
    automation_run_id: str,
    step_key: str,
    idempotency_key: str,
    approval_overrides: Mapping[str, bool],
    loc_prefix: Sequence[str | int],
    now: datetime,
) -> NewStepRun:
    """Validate one request like ``ActionRunService.create`` does (``ValidationFailed`` with paths under
    ``loc_prefix``) and build its row."""
    try:
        action = registry.get(request.kind)
    except UnknownKind:
        raise ValidationFailed.at([*loc_prefix, "kind"], f"unknown action kind {request.kind!r}") from None
    try:
        action.input_model.model_validate(request.inputs)
    except ValidationError as exc:
        errors = [FieldError([*loc_prefix, "inputs", *err["loc"]], err["msg"], err["type"]) for err in exc.errors()]
        raise ValidationFailed(f"inputs do not match the {action.slug!r} input schema", errors=errors) from None
    try:
        digest = inputs_hash(request.inputs)
    except ValueError:
        raise ValidationFailed.at([*loc_prefix, "inputs"], "inputs must be finite JSON") from None
    gated = requires_approval(action, approval_overrides)
    return NewStepRun(
        {
            "id": new_id("run"),
            "tenant_id": tenant_id,
            "kind": request.kind,
            "status": RunStatus.AWAITING_APPROVAL if gated else RunStatus.PENDING,
            "inputs": request.inputs,
            "inputs_hash": digest,
            "idempotency_key": idempotency_key,
            "priority": request.priority,
            "timeout_s": request.timeout_s or action.default_timeout_s,
            "max_attempts": request.max_attempts or action.retry.max_attempts,
            "attempt": 0,
            "origin": RunOrigin.automation,
            "automation_run_id": automation_run_id,
            "step_key": step_key,
            "template_snapshot": request.template_snapshot,
            "created_at": now,
            "updated_at": now,
            "available_at": now,
            "lease_token": 0,
            # Set when the run is created RUNNING (``leased_to``); present in every row, as one INSERT takes them all.
            "lease_owner": None,
            "lease_expires_at": None,
            "started_at": None,
            "last_event_seq": 1,
            "requires_approval": gated,
        }
    )


def leased_to(run: NewStepRun, worker_name: str, running_columns: dict[str, Any]) -> NewStepRun:
    """``run`` created RUNNING under a local worker's lease (``LocalHandoff.running_columns``) instead of PENDING."""
    assert run.status is RunStatus.PENDING, "only a run that needs no approval is handed to a worker"
    event_extra = {"worker": worker_name, "attempt": running_columns["attempt"]}
    return replace(run, row=run.row | running_columns, event_extra=event_extra)


async def insert_step_runs(session: AsyncSession, runs: Sequence[NewStepRun]) -> set[str]:
    """Insert ``runs`` in the caller's transaction; returns the idempotency keys inserted.

    A key that is taken already inserts nothing (``key_holders`` says by what). The runs' first events
    (``first_events``) are written with the rest of the pass; wake-ups are the caller's (``publish_enqueued``, once
    per transaction)."""
    if not runs:
        return set()
    stmt = _INSERT[session.get_bind().dialect.name]
    return set((await session.execute(stmt, [run.row for run in runs])).scalars().all())


# Built once per dialect (a chain inserts one run per step: rebuilding the statement each time is measurable).
_TABLE = cast(sa.Table, ActionRun.__table__)
_INSERT = {
    dialect: insert(_TABLE)
    .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
    .returning(_TABLE.c.idempotency_key)
    for dialect, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def first_events(runs: Sequence[NewStepRun]) -> list[dict[str, Any]]:
    """The first status event of each of ``runs`` (``action_run_events`` rows)."""
    return [
        {
            "id": new_id("evt"),
            "tenant_id": run.row["tenant_id"],
            "run_id": run.id,
            "seq": 1,
            "kind": STATUS_EVENT,
            "data": {"from": None, "to": run.status.value, "origin": RunOrigin.automation.value} | run.event_extra,
            "created_at": run.row["created_at"],
        }
        for run in runs
    ]


async def key_holders(session: AsyncSession, tenant_id: str, keys: Sequence[str]) -> dict[str, str]:
    """``{idempotency key: id of the run holding it}`` for keys that ``insert_step_runs`` found taken."""
    stmt = sa.select(ActionRun.idempotency_key, ActionRun.id).where(
        ActionRun.tenant_id == tenant_id, ActionRun.idempotency_key.in_(keys)
    )
    return {str(key): str(run_id) for key, run_id in (await session.execute(stmt)).tuples().all()}


async def publish_enqueued(session: AsyncSession, first_run_id: str) -> None:
    """One ``enqueued`` wake-up for the transaction's new PENDING runs: a worker needs to hear it once."""
    await driver_for_session(session).publish(session, Wakeup("enqueued", first_run_id))
