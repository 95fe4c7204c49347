"""ActionRun decisions: create (through the one builder), read, cancel, approve, reject, wait.

Runs are created by ``runtime/creation.py`` whatever their origin (this service for the API and template
instantiations, the orchestrator for parent runs); cancellation is ``runtime/cancellation.py``'s. State changes go
through ``runtime.transition``; wake-ups are published in the same transaction, so workers hear of a run only once
it is committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import ApprovalPolicyService
from virtuousai.actions.registry import default_registry
from virtuousai.actions.repository import ActionRunEventRepository, ActionRunRepository
from virtuousai.connections.service import ConnectionService
from virtuousai.errors import Conflict, NotFound, ValidationFailed
from virtuousai.runtime.cancellation import cancel_run
from virtuousai.runtime.creation import RunRequest, create_runs, inputs_hash
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent, RunOrigin
from virtuousai.runtime.transition import LeaseLost, transition
from virtuousai.runtime.waiting import wait_until_terminal
from virtuousai.store.drivers import hub_for
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow


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
        parent_run_id: str | None = None,
        step_key: str | None = None,
        turn_id: str | None = None,
        message_id: str | None = None,
        trigger_id: str | None = None,
        template_snapshot: dict[str, Any] | None = None,
        loc_prefix: Sequence[str | int] = ("body",),
        commit: bool = True,
    ) -> CreatedRun:
        """Validate and store a new run (PENDING, or AWAITING_APPROVAL per the organization's policy) and commit.

        ``loc_prefix`` is where the caller's fields live in its own request, for 422 paths (the API: ``body``). An
        idempotency key already used with the same kind and inputs answers with that run; with others, 409.
        ``commit=False`` leaves the commit to the caller (several runs in one transaction); the wake-up goes out at
        that commit."""
        if kind in self.registry and self.registry.get(kind).internal:
            raise ValidationFailed.at([*loc_prefix, "kind"], f"action kind {kind!r} is the system's own")
        if kind in self.registry:
            await self._check_connection(self.registry.get(kind).input_model, inputs, [*loc_prefix, "inputs"])
        request = RunRequest(
            kind=kind,
            inputs=inputs,
            idempotency_key=idempotency_key,
            priority=priority,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            origin=RunOrigin(origin),
            parent_run_id=parent_run_id,
            step_key=step_key,
            turn_id=turn_id,
            message_id=message_id,
            trigger_id=trigger_id,
            template_snapshot=template_snapshot,
            loc=tuple(loc_prefix),
        )
        overrides = await ApprovalPolicyService(self.session, self.tenant, self.registry).overrides()
        created = await create_runs(
            self.session, self.registry, [request], tenant_id=self.tenant.tenant_id, approval_overrides=overrides
        )
        if created.taken:
            assert idempotency_key is not None  # only a key can be taken
            existing = await self.runs.get_by_idempotency_key(idempotency_key)
            assert existing is not None  # the unique index found it; runs are never deleted
            if existing.kind != kind or existing.inputs_hash != inputs_hash(inputs):
                message = f"idempotency key {idempotency_key!r} was used for run {existing.id} with different inputs"
                raise Conflict(message, run_id=existing.id)
            return CreatedRun(existing, created=False)
        if not commit:
            return CreatedRun(created.runs()[0], created=True)
        await self.session.commit()
        return CreatedRun(await self.get(created.rows[0]["id"]), created=True)

    async def _check_connection(self, model: type[BaseModel], inputs: Mapping[str, Any], loc: list[str | int]) -> None:
        """The connection the run would use (its ``connection`` input, else the kind's default one) must exist in
        this organization: a 422 naming the field now, not a run that fails when it executes."""
        field = model.model_fields.get("connection")
        ref = inputs.get("connection", None if field is None else field.default)
        if not isinstance(ref, str) or not ref:
            return
        error = await ConnectionService(self.session, self.tenant).ref_error(ref, [*loc, "connection"])
        if error is not None:
            raise ValidationFailed(error["msg"], errors=[error])

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
        return await cancel_run(self.session, self.tenant.tenant_id, run_id, requested_by=self.tenant.user_id)

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
