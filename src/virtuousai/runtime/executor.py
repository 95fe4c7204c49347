"""``RunExecutor``: runs one claimed run to an outcome and records it — the single path for every origin.

One attempt:
1. look up the kind, re-check the approval binding, validate the inputs;
2. start ``execute(ctx, inputs)`` (a task, or a daemon thread for sync kinds, which cannot be interrupted);
3. supervise it against the run's timeout, cancellation requests, a lost lease and a draining worker; after a
   cancel or timeout the action has ``cancel_grace_s`` to stop by itself before it is abandoned;
4. record the outcome, fenced by the claim's token: COMPLETED, FAILED, CANCELLED, or PENDING again (retry with
   backoff, or released by a draining worker). Outcomes of runs that finish close together are written in one
   transaction (``OutcomeRecorder``, group commit); a run with a parent may instead be finished together with the
   parent's next pass (``parent_finisher``), which may hand back the parent's next child to run in the same slot.
   A lost lease records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.config import Settings
from virtuousai.runtime.context import (
    ActionContext,
    CancellationToken,
    Cancelled,
    ConnectionResolver,
    ConnectionResolverFactory,
    SharedResources,
    no_connections,
)
from virtuousai.runtime.kinds import ActionKind, KindRegistry, RetryPolicy, UnknownKind
from virtuousai.runtime.recorder import OutcomeRecorder, ParentFinisher
from virtuousai.runtime.retry import decide_retry
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.transition import Finish, LeaseLost, RunHandle, append_event
from virtuousai.store.drivers import ClaimedRun, RunQueueDriver
from virtuousai.store.engine import transaction
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass
class RunControl:
    """The worker's levers on one in-flight run (set from the heartbeat, the abort poller and shutdown)."""

    run: ClaimedRun
    cancel: CancellationToken = field(default_factory=CancellationToken)
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    event_seq: int = 0  # the run's latest event as this worker appended it (its claim's, then its progress events)
    # Someone asked the run to stop (not only its own timeout tripping the token): an attempt that fails now is the
    # last one, not retried.
    cancel_requested: bool = False

    def __post_init__(self) -> None:
        self.event_seq = self.run.event_seq

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.cancel.cancel("cancel requested")


OutcomeKind = Literal["completed", "failed", "cancelled", "released", "lost"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retryable: bool = True
    forced: bool = False  # the action did not stop within the grace period and was abandoned


def error_of(exc: BaseException) -> dict[str, Any]:
    """``{type, message}``: a kind may name its error with an ``error_type`` attribute (e.g. ``ActionFailed``) and
    add JSON facts about it with ``error_details`` (an agent's model call: the attempts it paid for)."""
    error_type = getattr(exc, "error_type", None)
    details = getattr(exc, "error_details", None)
    error = {"type": str(error_type or type(exc).__name__), "message": str(exc)[:2000]}
    return error | dict(details) if isinstance(details, dict) else error


class RunExecutor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: KindRegistry,
        settings: Settings,
        *,
        owner: str,
        driver: RunQueueDriver,
        connections: ConnectionResolverFactory | None = None,
        shared: SharedResources | None = None,
    ) -> None:
        self.sessions = sessions
        self.shared = shared or SharedResources()
        self.registry = registry
        self.settings = settings
        self.owner = owner
        self.connections = connections
        self.recorder = OutcomeRecorder(sessions, driver)
        self.parent_finisher: ParentFinisher | None = None

    async def execute(self, control: RunControl) -> ClaimedRun | None:
        """Run one attempt and record it; returns the run to execute next in this slot, if the run's parent handed
        one over (``parent_finisher``)."""
        run = control.run
        try:
            kind = self.registry.get(run.kind)
        except UnknownKind:
            outcome = Outcome("failed", error={"type": "UnknownKind", "message": f"no action kind {run.kind!r}"})
            return await self._record(control, outcome, RetryPolicy())
        outcome = await self._attempt(control, kind)
        return await self._record(control, outcome, kind.retry)

    async def _attempt(self, control: RunControl, kind: ActionKind) -> Outcome:
        run = control.run
        if run.requires_approval and run.approved_inputs_hash != run.inputs_hash:
            message = "the approval does not match these inputs"
            return Outcome("failed", error={"type": "ApprovalMismatch", "message": message}, retryable=False)
        try:
            inputs = kind.input_model.model_validate(run.inputs)
        except ValidationError as exc:
            return Outcome("failed", error={"type": "InvalidInputs", "message": str(exc)[:2000]}, retryable=False)
        loop = asyncio.get_running_loop()
        control.cancel.bind_loop(loop)
        if run.cancel_requested_at is not None:
            control.request_cancel()
        ctx = ActionContext(
            run_id=run.id,
            tenant=TenantContext(tenant_id=run.tenant_id),
            attempt=run.attempt,
            parent_run_id=run.parent_run_id,
            cancel=control.cancel,
            data_dir=self.settings.data_dir,
            options={
                "http_allow_loopback": self.settings.http_allow_loopback,
                "fetch_page_max_bytes": self.settings.fetch_page_max_bytes,
            },
            shared=self.shared,
            _emit=self._emitter(control),
            _resolve=self._resolver(run.tenant_id),
            _sessions=self.sessions,
            _loop=loop,
        )
        work = _start(kind, ctx, inputs)
        try:
            # One loop step first: a quick async kind is done by then, and needs none of the supervision's waiters
            # (three futures and a timer per run: a measurable share of a short run's cost).
            await asyncio.sleep(0)
            if work.done() and not control.lease_lost.is_set() and not control.release.is_set():
                return self._finished(kind, work, cancel_requested=control.cancel.cancelled)
            return await self._supervise(control, kind, work)
        finally:
            if not work.done():
                work.cancel()  # abandoned: an async kind is interrupted; a thread runs on, detached

    async def _supervise(self, control: RunControl, kind: ActionKind, work: asyncio.Future[Any]) -> Outcome:
        cancelled = asyncio.ensure_future(control.cancel.wait())
        lost = asyncio.ensure_future(control.lease_lost.wait())
        release = asyncio.ensure_future(control.release.wait())
        try:
            done, _ = await asyncio.wait(
                {work, cancelled, lost, release}, timeout=control.run.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if work in done:
                return self._finished(kind, work, cancel_requested=control.cancel.cancelled)
            if lost in done:
                control.cancel.cancel("lease lost")
                return Outcome("lost")
            if release in done:
                control.cancel.cancel("worker shutting down")
                return Outcome("released")
            timed_out = cancelled not in done
            if timed_out:
                control.cancel.cancel("timeout")
            # Cooperative first: the action sees the token at its next safe point. Then it is abandoned. (The first
            # of the two to end: an action that stops at once is recorded at once, not after the whole grace.)
            done, _ = await asyncio.wait(
                {work, lost}, timeout=self.settings.cancel_grace_s, return_when=asyncio.FIRST_COMPLETED
            )
            if lost in done and work not in done:
                return Outcome("lost")
            if work in done:
                outcome = self._finished(kind, work, cancel_requested=not timed_out)
                if not timed_out or outcome.kind == "completed":
                    return outcome
            message = f"exceeded its timeout of {control.run.timeout_s:g}s"
            if timed_out:
                return Outcome("failed", error={"type": "Timeout", "message": message}, forced=work not in done)
            return Outcome("cancelled", error=_cancel_error(forced=True), forced=True)
        finally:
            for waiter in (cancelled, lost, release):
                waiter.cancel()

    def _finished(self, kind: ActionKind, work: asyncio.Future[Any], *, cancel_requested: bool) -> Outcome:
        exc = work.exception() if not work.cancelled() else Cancelled("interrupted")
        if exc is None:
            try:
                output = _output_of(kind, work.result())
            except ValidationError as invalid:
                return Outcome("failed", error={"type": "InvalidOutput", "message": str(invalid)[:2000]})
            return Outcome("completed", output=output)
        if isinstance(exc, Cancelled) or cancel_requested:
            return Outcome("cancelled", error=_cancel_error(forced=False))
        # An error may say that another attempt cannot help (``virtuousai.net``: a blocked destination, an invalid
        # URL, a redirect loop): then the run fails now instead of spending its remaining attempts.
        return Outcome("failed", error=error_of(exc), retryable=bool(getattr(exc, "retryable", True)))

    async def _record(self, control: RunControl, outcome: Outcome, policy: RetryPolicy) -> ClaimedRun | None:
        run = control.run
        if outcome.kind == "lost":
            log.warning("run %s: lease %s lost; another worker or the watchdog owns it now", run.id, run.lease_token)
            return None
        now = utcnow()
        event: dict[str, Any] = {"attempt": run.attempt}
        finish = Finish(run, RunStatus.COMPLETED, event, output=outcome.output, event_seq=control.event_seq)
        if outcome.kind == "cancelled":
            finish = replace(
                finish, to=RunStatus.CANCELLED, error=outcome.error, event=event | {"forced": outcome.forced}
            )
        elif outcome.kind == "released":
            # Shutting down is not the run's fault: give the attempt back.
            event |= {"reason": "released"}
            finish = replace(finish, to=RunStatus.PENDING, available_at=now, give_back_attempt=True, event=event)
        elif outcome.kind == "failed" and control.cancel_requested:
            # Asked to stop while the attempt was failing (a cancel that came during its timeout's grace, when the
            # token was already tripped): it ends here instead of waiting out a retry's backoff to be cancelled.
            event |= {"forced": outcome.forced, "error": outcome.error}
            finish = replace(finish, to=RunStatus.CANCELLED, error=_cancel_error(forced=outcome.forced), event=event)
        elif outcome.kind == "failed":
            decision = decide_retry(attempt=run.attempt, max_attempts=run.max_attempts, policy=policy, now=now)
            event |= {"error": outcome.error}
            if outcome.retryable and decision.retry:
                event |= {"reason": "retry", "retry_in_s": round(decision.delay_s, 3)}
                finish = replace(
                    finish, to=RunStatus.PENDING, error=outcome.error, available_at=decision.available_at, event=event
                )
            else:
                finish = replace(finish, to=RunStatus.FAILED, error=outcome.error, event=event)
        with_parent = None
        if self.parent_finisher is not None and run.parent_run_id and finish.to.is_terminal:
            # Shielded like the group commit: once begun, the write runs to its end.
            with_parent = await asyncio.shield(self.parent_finisher(finish, self.owner))
        if with_parent is not None:
            recorded, next_run = with_parent.recorded, with_parent.next_run
        else:
            # Runs that finish close together share one transaction (group commit); each keeps its own guard.
            recorded, next_run = await self.recorder.record(finish), None
        if not recorded:
            log.warning("run %s: lease %s lost before recording %s", run.id, run.lease_token, outcome.kind)
        return next_run

    def _emitter(self, control: RunControl) -> Callable[[str, Mapping[str, Any]], Coroutine[Any, Any, None]]:
        run = control.run
        handle = RunHandle(run.id, run.tenant_id, RunStatus.RUNNING)

        async def emit(kind: str, data: Mapping[str, Any]) -> None:
            if kind == "status":
                raise ValueError("'status' events are the runtime's; name progress events something else")
            try:
                async with transaction(self.sessions) as session:
                    control.event_seq = await append_event(session, handle, kind, data, token=run.lease_token)
            except LeaseLost:
                control.lease_lost.set()
                raise Cancelled("lease lost") from None

        return emit

    def _resolver(self, tenant_id: str) -> ConnectionResolver:
        if self.connections is None:
            return no_connections
        return self.connections(TenantContext(tenant_id=tenant_id))


def _cancel_error(*, forced: bool) -> dict[str, str]:
    if forced:
        return {"type": "Cancelled", "message": "cancelled; the action did not stop within the grace period"}
    return {"type": "Cancelled", "message": "cancelled on request"}


def _output_of(kind: ActionKind, result: Any) -> dict[str, Any]:
    model = result if isinstance(result, BaseModel) else kind.output_model.model_validate(result)
    if not isinstance(model, kind.output_model):
        model = kind.output_model.model_validate(model.model_dump())
    dumped: dict[str, Any] = model.model_dump(mode="json")
    return dumped


def _start(kind: ActionKind, ctx: ActionContext, inputs: BaseModel) -> asyncio.Future[Any]:
    if kind.is_async:
        task: asyncio.Future[Any] = asyncio.ensure_future(kind.execute(ctx, inputs))
        return task
    return _in_daemon_thread(kind.execute, ctx, inputs)


def _in_daemon_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run a sync kind in its own daemon thread. Unlike a pool thread, a stuck one that we abandon occupies no slot
    that other runs need, and does not keep the process alive at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return  # abandoned meanwhile
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed while we ran
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=f"vai-run-{ctx_run_id(args)}", daemon=True).start()
    return future


def ctx_run_id(args: tuple[Any, ...]) -> str:
    return args[0].run_id if args and isinstance(args[0], ActionContext) else "?"
