"""ActionRun decisions: create (validation, idempotency, approval gate), read, cancel, approve, reject, wait.

Every origin creates runs here — the API, automations (``origin="automation"``, ``automation_run_id``,
``step_key``), agents and chat, schedules — and one executor runs them all. State changes go through
``runtime.transition``; wake-ups are published in the same transaction, so workers hear of a run only once it is
committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import ApprovalPolicyService, requires_approval
from virtuousai.actions.registry import ActionKind, KindRegistry, UnknownKind, default_registry
from virtuousai.actions.repository import ActionRunEventRepository, ActionRunRepository
from virtuousai.actions.tables import ActionRun, ActionRunEvent, RunOrigin
from virtuousai.errors import Conflict, FieldError, NotFound, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.transition import STATUS_EVENT, LeaseLost, append_event, transition
from virtuousai.runtime.waiting import wait_until_terminal
from virtuousai.store.drivers import Wakeup, driver_for_session, hub_for
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces, UTF-8): equal inputs hash equal, whoever sent them."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedRun:
    run: ActionRun
    created: bool  # False: an earlier run with the same idempotency key and inputs


class ActionRunService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, registry: KindRegistry | None = None) -> None:
        self.session = session
        self.tenant = tenant
        self.registry = registry or default_registry()
        self.runs = ActionRunRepository(session, tenant)
        self.events = ActionRunEventRepository(session, tenant)

    # -- create ------------------------------------------------------------------------------------------------

    async def create(
        self,
        *,
        kind: str,
        inputs: Mapping[str, Any],
        idempotency_key: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        origin: RunOrigin | str = RunOrigin.api,
        automation_run_id: str | None = None,
        step_key: str | None = None,
        agent_run_id: str | None = None,
        turn_id: str | None = None,
        message_id: str | None = None,
        trigger_id: str | None = None,
        template_snapshot: dict[str, Any] | None = None,
        loc_prefix: Sequence[str | int] = ("body",),
        commit: bool = True,
    ) -> CreatedRun:
        """Validate and store a new run (PENDING, or AWAITING_APPROVAL per the organization's policy) and commit.

        ``loc_prefix`` is where the caller's fields live in its own request, for 422 paths (the API: ``body``).
        ``commit=False`` leaves the commit to the caller, whose own writes then land in the same transaction (the
        automation engine stores a step's state and its runs together); the wake-up still goes out at that commit.
        """
        action = self._kind(kind, loc_prefix)
        self._validate_inputs(action, inputs, loc_prefix)
        digest = inputs_hash(inputs)
        if idempotency_key is not None:
            existing = await self._existing(idempotency_key, kind, digest)
            if existing is not None:
                return CreatedRun(existing, created=False)
        overrides = await ApprovalPolicyService(self.session, self.tenant, self.registry).overrides()
        gated = requires_approval(action, overrides)
        status = RunStatus.AWAITING_APPROVAL if gated else RunStatus.PENDING
        now = utcnow()
        run = ActionRun(
            id=new_id("run"),
            kind=kind,
            status=status,
            inputs=dict(inputs),
            inputs_hash=digest,
            idempotency_key=idempotency_key,
            priority=priority,
            timeout_s=timeout_s or action.default_timeout_s,
            max_attempts=max_attempts or action.retry.max_attempts,
            attempt=0,
            origin=RunOrigin(origin),
            automation_run_id=automation_run_id,
            step_key=step_key,
            agent_run_id=agent_run_id,
            turn_id=turn_id,
            message_id=message_id,
            trigger_id=trigger_id,
            template_snapshot=template_snapshot,
            created_at=now,
            updated_at=now,
            available_at=now,
            lease_token=0,
            last_event_seq=1,
            requires_approval=gated,
        )
        self.runs.add(run)
        self.session.add(
            ActionRunEvent(
                id=new_id("evt"),
                tenant_id=self.tenant.tenant_id,
                run_id=run.id,
                seq=1,
                kind=STATUS_EVENT,
                data={"from": None, "to": status.value, "origin": run.origin.value},
                created_at=now,
            )
        )
        try:
            await self.session.flush()
        except IntegrityError:
            # Another request with the same idempotency key won the race: answer with its run.
            await self.session.rollback()
            if idempotency_key is not None:
                existing = await self._existing(idempotency_key, kind, digest)
                if existing is not None:
                    return CreatedRun(existing, created=False)
            raise
        if status is RunStatus.PENDING:
            await driver_for_session(self.session).publish(self.session, Wakeup("enqueued", run.id))
        if commit:
            await self.session.commit()
        return CreatedRun(run, created=True)

    def _kind(self, slug: str, loc_prefix: Sequence[str | int]) -> ActionKind:
        try:
            return self.registry.get(slug)
        except UnknownKind:
            raise ValidationFailed.at([*loc_prefix, "kind"], f"unknown action kind {slug!r}") from None

    @staticmethod
    def _validate_inputs(kind: ActionKind, inputs: Mapping[str, Any], loc_prefix: Sequence[str | int]) -> None:
        try:
            kind.input_model.model_validate(dict(inputs))
        except ValidationError as exc:
            errors = [FieldError([*loc_prefix, "inputs", *err["loc"]], err["msg"], err["type"]) for err in exc.errors()]
            raise ValidationFailed(f"inputs do not match the {kind.slug!r} input schema", errors=errors) from None
        try:
            inputs_hash(inputs)
        except ValueError:
            raise ValidationFailed.at([*loc_prefix, "inputs"], "inputs must be finite JSON") from None

    async def _existing(self, key: str, kind: str, digest: str) -> ActionRun | None:
        run = await self.runs.get_by_idempotency_key(key)
        if run is not None and (run.kind != kind or run.inputs_hash != digest):
            raise Conflict(f"idempotency key {key!r} was used for run {run.id} with different inputs", run_id=run.id)
        return run

    # -- read --------------------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> ActionRun:
        run = await self.runs.get_fresh(run_id)
        if run is None:
            raise NotFound(f"action run {run_id} not found")
        return run

    async def list(
        self,
        page: PageRequest,
        *,
        status: RunStatus | None = None,
        kind: str | None = None,
        origin: RunOrigin | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> PageResult[ActionRun]:
        return await self.runs.list(
            page,
            status=status,
            kind=kind,
            origin=origin,
            created_after=created_after,
            created_before=created_before,
        )

    async def events_after(self, run_id: str, after_seq: int) -> Sequence[ActionRunEvent]:
        return await self.events.after(run_id, after_seq)

    async def wait(self, run_id: str, timeout_s: float, *, poll_interval_s: float = 0.5) -> ActionRun:
        """Wait up to ``timeout_s`` for the run to be terminal; returns it either way."""
        await self.session.commit()  # hold no transaction while waiting (SQLite: it would block every writer)

        async def read_status() -> RunStatus | None:
            try:
                return await self.runs.status_of(run_id)
            finally:
                await self.session.rollback()

        await wait_until_terminal(
            read_status,
            hub=hub_for(self.session.get_bind().engine.url),
            run_id=run_id,
            timeout_s=timeout_s,
            poll_interval_s=poll_interval_s,
        )
        return await self.get(run_id)

    # -- decisions ---------------------------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> ActionRun:
        """PENDING or AWAITING_APPROVAL: CANCELLED at once. RUNNING: ask the worker (cooperative, then forced after
        the grace period). Already CANCELLED: unchanged. COMPLETED or FAILED: 409."""
        for _ in range(3):  # the run may move between our read and our guarded write; look again
            run = await self.get(run_id)
            now = utcnow()
            try:
                if run.status in (RunStatus.PENDING, RunStatus.AWAITING_APPROVAL):
                    await transition(
                        self.session,
                        run,
                        RunStatus.CANCELLED,
                        values={"cancel_requested_at": now, "error": _cancelled_error("before it started")},
                        event={"requested_by": self.tenant.user_id},
                        now=now,
                    )
                elif run.status is RunStatus.RUNNING:
                    if run.cancel_requested_at is None:
                        await self._request_cancel(run, now)
                elif run.status is RunStatus.CANCELLED:
                    return run
                else:
                    raise Conflict(
                        f"action run {run_id} already finished ({run.status.value})", run_status=run.status.value
                    )
            except LeaseLost:
                await self.session.rollback()
                continue
            await self.session.commit()
            return await self.get(run_id)
        raise Conflict(f"action run {run_id} kept changing; try again")

    async def _request_cancel(self, run: ActionRun, now: datetime) -> None:
        if not await self.runs.mark_cancel_requested(run.id, now):
            raise LeaseLost(run.id)
        await append_event(self.session, run, "cancel_requested", {"requested_by": self.tenant.user_id})
        await driver_for_session(self.session).publish(self.session, Wakeup("cancel", run.id))

    async def approve(self, run_id: str, seen_inputs_hash: str) -> ActionRun:
        run = await self._awaiting_decision(run_id, seen_inputs_hash)
        now = utcnow()
        try:
            await transition(
                self.session,
                run,
                RunStatus.PENDING,
                values={
                    "approved_inputs_hash": run.inputs_hash,
                    "approved_by": self.tenant.user_id,
                    "approved_at": now,
                    "available_at": now,
                },
                event={"approved_by": self.tenant.user_id, "inputs_hash": run.inputs_hash},
                now=now,
            )
        except LeaseLost:
            raise Conflict(f"action run {run_id} was decided meanwhile") from None
        await self.session.commit()
        return await self.get(run_id)

    async def reject(self, run_id: str, seen_inputs_hash: str, reason: str | None) -> ActionRun:
        run = await self._awaiting_decision(run_id, seen_inputs_hash)
        now = utcnow()
        message = f"rejected: {reason}" if reason else "rejected by an approver"
        try:
            await transition(
                self.session,
                run,
                RunStatus.CANCELLED,
                values={
                    "rejected_by": self.tenant.user_id,
                    "rejected_at": now,
                    "error": {"type": "Rejected", "message": message},
                },
                event={"rejected_by": self.tenant.user_id, "reason": reason},
                now=now,
            )
        except LeaseLost:
            raise Conflict(f"action run {run_id} was decided meanwhile") from None
        await self.session.commit()
        return await self.get(run_id)

    async def _awaiting_decision(self, run_id: str, seen_inputs_hash: str) -> ActionRun:
        run = await self.get(run_id)
        if run.status is not RunStatus.AWAITING_APPROVAL:
            raise Conflict(
                f"action run {run_id} is {run.status.value}, not awaiting approval", run_status=run.status.value
            )
        if seen_inputs_hash != run.inputs_hash:
            raise Conflict(
                "the inputs changed since they were shown; review the run again",
                reason="stale_inputs_hash",
                inputs_hash=run.inputs_hash,
            )
        return run


def _cancelled_error(when: str) -> dict[str, str]:
    return {"type": "Cancelled", "message": f"cancelled on request {when}"}
