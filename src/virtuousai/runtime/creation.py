"""The one way ActionRuns are created, whoever asks: the API, a parent run's pass (automation steps, agent tool
calls), a template instantiation.

``create_runs`` takes ``RunRequest``s and, in the caller's transaction:

1. validates every request before writing anything (the kind exists, the inputs fit its input model and are
   finite JSON; ``ValidationFailed`` with field paths under each request's ``loc``);
2. fills the defaults (the kind's timeout and retry policy) and decides the first state: AWAITING_APPROVAL when the
   kind needs an approval under the organization's policy (``approval_overrides``; write kinds by default), else
   PENDING;
3. inserts them in one statement, skipping any whose idempotency key is already taken in the organization (the
   unique ``(tenant_id, idempotency_key)`` decides, also between concurrent writers): the caller learns which keys
   were taken and decides what that means (the API answers with the earlier run; a pass fails the step);
4. appends each new run's first status event and, when any is PENDING, one ``enqueued`` wake-up at commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.runtime.kinds import ActionKind, KindRegistry, UnknownKind
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import STATUS_EVENT, ActionRun, ActionRunEvent, RunOrigin
from virtuousai.store.drivers import Wakeup, driver_for_session
from virtuousai.timeutil import utcnow

Loc = tuple[str | int, ...]


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces, UTF-8): equal inputs hash equal, whoever sent them."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def requires_approval(kind: ActionKind, overrides: Mapping[str, bool]) -> bool:
    """The organization's policy (``overrides``: kind slug → required) or the default: write kinds wait."""
    return overrides.get(kind.slug, kind.risk == "write")


@dataclass(frozen=True)
class RunRequest:
    """One ActionRun to create. ``loc`` is where this request's fields are in the caller's own input (the API's
    ``("body",)``; an automation step's ``("steps", key)``), for the paths of a 422."""

    kind: str
    inputs: Mapping[str, Any]
    idempotency_key: str | None = None
    priority: int = 0
    timeout_s: float | None = None
    max_attempts: int | None = None
    origin: RunOrigin = RunOrigin.api
    parent_run_id: str | None = None
    step_key: str | None = None
    turn_id: str | None = None
    message_id: str | None = None
    trigger_id: str | None = None
    template_snapshot: dict[str, Any] | None = None
    loc: Loc = ("body",)
    # The new run's id, when the parent records it before the run exists (an agent's step names its ActionRun).
    run_id: str | None = None


@dataclass(frozen=True)
class CreatedRuns:
    """What ``create_runs`` stored: the new rows (column → value, in request order), and the requests whose
    idempotency key another run already holds (nothing was stored for those)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    taken: list[RunRequest] = field(default_factory=list)

    def runs(self) -> list[ActionRun]:
        """The new rows as (transient) ORM objects, for API responses."""
        return [ActionRun(**row) for row in self.rows]


def check_request(registry: KindRegistry, request: RunRequest) -> ActionKind:
    """The request's kind, once its inputs are known to fit it (else ``ValidationFailed`` under ``request.loc``)."""
    try:
        kind = registry.get(request.kind)
    except UnknownKind:
        raise ValidationFailed.at([*request.loc, "kind"], f"unknown action kind {request.kind!r}") from None
    try:
        kind.input_model.model_validate(dict(request.inputs))
    except ValidationError as exc:
        errors = [FieldError([*request.loc, "inputs", *e["loc"]], e["msg"], e["type"]) for e in exc.errors()]
        raise ValidationFailed(f"inputs do not match the {kind.slug!r} input schema", errors=errors) from None
    try:
        inputs_hash(request.inputs)
    except ValueError:
        raise ValidationFailed.at([*request.loc, "inputs"], "inputs must be finite JSON") from None
    return kind


def run_row(
    kind: ActionKind, request: RunRequest, *, tenant_id: str, approval_overrides: Mapping[str, bool], now: datetime
) -> dict[str, Any]:
    """The ``action_runs`` row of a checked request: every column, as one INSERT of many rows needs them."""
    gated = requires_approval(kind, approval_overrides)
    return {
        "id": request.run_id or new_id("run"),
        "tenant_id": tenant_id,
        "kind": request.kind,
        "status": RunStatus.AWAITING_APPROVAL if gated else RunStatus.PENDING,
        "inputs": dict(request.inputs),
        "inputs_hash": inputs_hash(request.inputs),
        "idempotency_key": request.idempotency_key,
        "priority": request.priority,
        "timeout_s": request.timeout_s or kind.default_timeout_s,
        "max_attempts": request.max_attempts or kind.retry.max_attempts,
        "attempt": 0,
        "origin": request.origin,
        "parent_run_id": request.parent_run_id,
        "step_key": request.step_key,
        "turn_id": request.turn_id,
        "message_id": request.message_id,
        "trigger_id": request.trigger_id,
        "template_snapshot": request.template_snapshot,
        "created_at": now,
        "updated_at": now,
        "available_at": now,
        "lease_token": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "started_at": None,
        "last_event_seq": 1,
        "requires_approval": gated,
    }


@dataclass(frozen=True)
class Lease:
    """A new run created RUNNING under ``owner``'s lease (token 1, attempt 1) instead of PENDING: the fast path of a
    parent run hands its next child straight to the worker whose slot the previous child frees
    (``orchestration/fast_path.py``). A run that needs an approval is never leased."""

    owner: str
    expires_at: datetime


@dataclass(frozen=True)
class NewRuns:
    """Checked ``action_runs`` rows (column → value, in request order) and their first status events, not yet
    written: ``create_runs`` writes them, and a parent run's pass writes them together with its own changes."""

    rows: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @property
    def wakeup(self) -> Wakeup | None:
        """One ``enqueued`` wake-up for the new PENDING runs (a worker needs to hear it once)."""
        pending = next((row for row in self.rows if row["status"] is RunStatus.PENDING), None)
        return None if pending is None else Wakeup("enqueued", pending["id"])

    def only(self, ids: set[str]) -> NewRuns:
        return NewRuns([r for r in self.rows if r["id"] in ids], [e for e in self.events if e["run_id"] in ids])


def build_runs(
    registry: KindRegistry,
    requests: Sequence[RunRequest],
    *,
    tenant_id: str,
    approval_overrides: Mapping[str, bool],
    lease: Lease | None = None,
) -> NewRuns:
    """Check every request (``ValidationFailed`` before anything is built) and build its row and first event."""
    kinds = [check_request(registry, request) for request in requests]
    now = utcnow()
    rows = [
        run_row(kind, request, tenant_id=tenant_id, approval_overrides=approval_overrides, now=now)
        for kind, request in zip(kinds, requests, strict=True)
    ]
    events = []
    for row in rows:
        data = {"from": None, "to": row["status"].value, "origin": RunOrigin(row["origin"]).value}
        if lease is not None and row["status"] is RunStatus.PENDING:
            row |= {
                "status": RunStatus.RUNNING,
                "attempt": 1,
                "lease_token": 1,
                "lease_owner": lease.owner,
                "lease_expires_at": lease.expires_at,
                "started_at": now,
            }
            data |= {"to": RunStatus.RUNNING.value, "worker": lease.owner, "attempt": 1}
        events.append(
            {
                "id": new_id("evt"),
                "tenant_id": tenant_id,
                "run_id": row["id"],
                "seq": 1,
                "kind": STATUS_EVENT,
                "data": data,
                "created_at": now,
            }
        )
    return NewRuns(rows, events)


async def create_runs(
    session: AsyncSession,
    registry: KindRegistry,
    requests: Sequence[RunRequest],
    *,
    tenant_id: str,
    approval_overrides: Mapping[str, bool],
) -> CreatedRuns:
    """Validate all of ``requests``, then store the new ones with their first events, in the caller's transaction."""
    if not requests:
        return CreatedRuns()
    new = build_runs(registry, requests, tenant_id=tenant_id, approval_overrides=approval_overrides)
    driver = driver_for_session(session)
    inserted = await driver.insert_ignoring_conflicts(
        session, ActionRun.__table__, new.rows, conflict=("tenant_id", "idempotency_key")
    )
    created = new.only(inserted)
    taken = [request for row, request in zip(new.rows, requests, strict=True) if row["id"] not in inserted]
    if created.rows:
        await session.execute(sa.insert(ActionRunEvent), created.events)
        if created.wakeup is not None:
            await driver.publish(session, created.wakeup)
    return CreatedRuns(created.rows, taken)
