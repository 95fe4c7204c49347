"""Agent runs: start, read (with steps and the DAG), list, wait, approve or reject a waiting tool call, cancel, rate.

Starting a run pins the spec's current version, stores a PENDING run, commits, and has the process's orchestrator
advance it: its first pass starts the first model call (``loop.py``), and the workers do the rest. Every decision
(approve, reject, cancel) is recorded first and then the run is advanced, so its pass — in any process, after any
restart — finds the decision in the database, never in memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.service import ActionRunService
from virtuousai.agents.loop import new_run_row
from virtuousai.agents.run_repository import AgentRunRepository
from virtuousai.agents.service import SLUG_REF_PREFIX, AgentSpecService, SpecAtVersion
from virtuousai.agents.states import AgentRunStatus
from virtuousai.agents.tables import AgentRun, AgentRunEvent, AgentRunFeedback, AgentRunStep
from virtuousai.errors import Conflict, NotFound
from virtuousai.ids import AGENT_RUN_PREFIX, has_prefix, new_id
from virtuousai.orchestration.orchestrator import Orchestrator
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.waiting import wait_until_terminal
from virtuousai.store.drivers import hub_for
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

# A run's stream interleaves the narration of its model calls: ``<seq>`` for the run's own events, ``<seq>.<n>``
# for narration event ``n`` of the model call that event ``<seq>`` started (``n``: that ActionRun's event seq).
EVENT_ID = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")
BATCH = 500


@dataclass(frozen=True)
class StreamEvent:
    """One event of a run's stream: its id (what ``Last-Event-ID`` sends back), its name, and its payload."""

    id: str
    kind: str
    seq: int
    data: dict[str, Any]
    at: datetime


async def read_stream(runs: AgentRunRepository, run_id: str, after: str) -> tuple[bool, list[StreamEvent]]:
    """The events after ``after`` (an id of this stream, or "0"), and whether the stream may end after them (the
    run is terminal and nothing is left). Narration is read from the model calls' ActionRuns: it is all written
    before the call ends, so before the run's next event."""
    seq_text, _, narrated = after.partition(".")
    seq = int(seq_text)
    finished = AgentRunStatus(await runs.status_of(run_id) or AgentRunStatus.CANCELLED).is_terminal
    out: list[StreamEvent] = []
    if seq:  # the model call the last event sent started may still be narrating
        current = await runs.event_at(run_id, seq)
        if current is not None:
            out += await _narration(runs, current, after=int(narrated or 0))
    events = await runs.events_after(run_id, seq, limit=BATCH)
    for event in events:
        out.append(StreamEvent(str(event.seq), event.kind, event.seq, event.data, event.created_at))
        out += await _narration(runs, event, after=0)
    return finished and len(events) < BATCH, out


async def _narration(runs: AgentRunRepository, event: AgentRunEvent, *, after: int) -> list[StreamEvent]:
    """The narration of the model call ``event`` started (nothing for any other event)."""
    data = event.data
    if event.kind != "step_started" or data.get("step_kind") != "model" or not data.get("action_run_id"):
        return []
    chunks = await runs.narration_after(str(data["action_run_id"]), after)
    context = {"run_id": data.get("run_id"), "action_run_id": data["action_run_id"]}
    return [
        StreamEvent(f"{event.seq}.{chunk.seq}", "narration", event.seq, context | chunk.data, chunk.created_at)
        for chunk in chunks
    ]


@dataclass(frozen=True)
class Dag:
    steps: Sequence[AgentRunStep]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(parent, step.id) for step in self.steps for parent in step.parents]

    def mermaid(self) -> str:
        """``flowchart TD``: a node per step (``s<position>``), an edge per parent."""
        name = {step.id: f"s{step.position}" for step in self.steps}
        lines = ["flowchart TD"]
        for step in self.steps:
            label = "model call" if step.kind == "model" else f"{step.kind}: {step.tool}"
            lines.append(f'  {name[step.id]}["{label} ({step.status})"]')
        lines += [f"  {name[source]} --> {name[target]}" for source, target in self.edges]
        return "\n".join(lines) + "\n"


class AgentRunService:
    def __init__(
        self, session: AsyncSession, tenant: TenantContext, orchestrator: Orchestrator, registry: KindRegistry
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.orchestrator = orchestrator
        self.registry = registry
        self.runs = AgentRunRepository(session, tenant)

    # -- starting -------------------------------------------------------------------------------------------------

    async def start(
        self,
        agent: str,
        input: str,
        context: dict[str, Any] | None = None,
        *,
        turn_id: str | None = None,
        message_id: str | None = None,
    ) -> AgentRun:
        """A PENDING run of ``agent``'s current version (404 for an agent this organization does not have), then
        its first pass. A subagent-mode spec may be run directly: its mode limits the picker and delegation."""
        found = await self._spec(agent)
        budget = found.version.permissions.get("max_cost_per_run")
        row = new_run_row(
            new_id(AGENT_RUN_PREFIX),
            tenant_id=self.tenant.tenant_id,
            spec_id=found.spec.id,
            version_id=found.version.id,
            version=found.version.version,
            input=input,
            context=context or {},
            parent_run_id=None,
            depth=0,
            budget=None if budget is None else Decimal(str(budget)),
            now=utcnow(),
            created_by=self.tenant.user_id,
            turn_id=turn_id,
            message_id=message_id,
        )
        await self.session.execute(sa.insert(AgentRun), [row])
        await self.session.commit()
        await self.orchestrator.settle(self.tenant.tenant_id, row["id"])
        return await self.get(row["id"])

    async def _spec(self, agent: str) -> SpecAtVersion:
        specs = AgentSpecService(self.session, self.tenant)
        if has_prefix(agent, "agt") or agent.startswith(SLUG_REF_PREFIX):
            return await specs.get(agent)
        try:
            return await specs.get(SLUG_REF_PREFIX + agent)
        except NotFound:
            raise NotFound(f"agent {agent!r} not found") from None

    # -- reading --------------------------------------------------------------------------------------------------

    async def get(self, run_id: str) -> AgentRun:
        run = await self.runs.get_fresh(run_id)
        if run is None:
            raise NotFound(f"agent run {run_id} not found")
        return run

    async def list(
        self,
        page: PageRequest,
        *,
        agent: str | None = None,
        status: AgentRunStatus | None = None,
        parent_run_id: str | None = None,
    ) -> PageResult[AgentRun]:
        spec_id = None if agent is None else (await self._spec(agent)).spec.id
        return await self.runs.list_runs(page, spec_id=spec_id, status=status, parent_run_id=parent_run_id)

    async def steps(self, run_id: str) -> Sequence[AgentRunStep]:
        await self.get(run_id)
        return await self.runs.steps(run_id)

    async def dag(self, run_id: str) -> Dag:
        return Dag(await self.steps(run_id))

    async def events_after(self, run_id: str, after_seq: int) -> Sequence[AgentRunEvent]:
        return await self.runs.events_after(run_id, after_seq)

    async def wait(self, run_id: str, timeout_s: float) -> AgentRun:
        """Up to ``timeout_s`` for the run to end or to wait for a human; returns it either way."""
        await self.session.commit()  # hold no transaction while waiting (SQLite: it would block every writer)

        async def read_status() -> AgentRunStatus | None:
            try:
                return await self.runs.status_of(run_id)
            finally:
                await self.session.rollback()

        await wait_until_terminal(
            read_status,
            hub=hub_for(self.session.get_bind().engine.url),
            run_id=run_id,
            timeout_s=timeout_s,
            poll_interval_s=0.25,
            done=lambda status: status.is_terminal or status is AgentRunStatus.AWAITING_APPROVAL,
        )
        return await self.get(run_id)

    # -- decisions ------------------------------------------------------------------------------------------------

    async def approve(self, run_id: str, step_id: str | None) -> AgentRun:
        """Approve one waiting tool call (this run's, or one a delegated run surfaced here): its ActionRun becomes
        PENDING — bound to the hash of the exact arguments shown — and the run goes on."""
        waiting = await self._waiting(run_id, step_id)
        actions = ActionRunService(self.session, self.tenant, self.registry)
        await actions.approve(str(waiting["action_run_id"]), str(waiting["inputs_hash"]))
        await self.session.commit()  # end the read that followed; the pass writes in its own transaction
        await self.orchestrator.settle(self.tenant.tenant_id, str(waiting["agent_run_id"]))
        return await self.get(run_id)

    async def reject(self, run_id: str, step_id: str | None, reason: str | None) -> AgentRun:
        """Reject one waiting tool call: it never runs; the run ends CANCELLED ``rejected`` (or, with the spec's
        ``on_reject: continue``, the model is told and goes on)."""
        waiting = await self._waiting(run_id, step_id)
        actions = ActionRunService(self.session, self.tenant, self.registry)
        await actions.reject(str(waiting["action_run_id"]), str(waiting["inputs_hash"]), reason)
        await self.session.commit()
        await self.orchestrator.settle(self.tenant.tenant_id, str(waiting["agent_run_id"]))
        return await self.get(run_id)

    async def _waiting(self, run_id: str, step_id: str | None) -> dict[str, Any]:
        run = await self.get(run_id)
        pending = list(run.pending_approvals or [])
        if run.status != AgentRunStatus.AWAITING_APPROVAL or not pending:
            raise Conflict(
                f"agent run {run_id} is {run.status}: no tool call waits for a decision", run_status=run.status
            )
        if step_id is None:
            if len(pending) > 1:
                raise Conflict(
                    f"agent run {run_id} has {len(pending)} tool calls waiting; name one with step_id",
                    pending=[entry["step_id"] for entry in pending],
                )
            return dict(pending[0])
        for entry in pending:
            if entry["step_id"] == step_id:
                return dict(entry)
        raise Conflict(f"step {step_id} of agent run {run_id} does not wait for a decision")

    async def cancel(self, run_id: str) -> AgentRun:
        """CANCELLED at once (the pass that follows the request ends it): its tool calls and delegated runs are
        asked to stop. A run that finished otherwise: 409."""
        run = await self.get(run_id)
        if run.status == AgentRunStatus.CANCELLED:
            return run
        if AgentRunStatus(run.status).is_terminal:
            raise Conflict(f"agent run {run_id} already finished ({run.status})", run_status=run.status)
        await self.session.execute(
            sa.update(AgentRun)
            .where(AgentRun.tenant_id == self.tenant.tenant_id, AgentRun.id == run_id)
            .where(AgentRun.cancel_requested_at.is_(None))
            .values(cancel_requested_at=utcnow())
        )
        await self.session.commit()
        await self.orchestrator.settle(self.tenant.tenant_id, run_id)
        run = await self.get(run_id)
        if run.status != AgentRunStatus.CANCELLED:
            raise Conflict(f"agent run {run_id} finished ({run.status}) before it could be cancelled")
        return run

    async def rate(self, run_id: str, rating: str, comment: str | None) -> AgentRunFeedback:
        """One rating per user and run; a second replaces the first."""
        await self.get(run_id)
        user = self.tenant.user_id or self.tenant.api_key_id or "anonymous"
        now = utcnow()
        feedback = await self.runs.feedback_of(run_id, user)
        if feedback is None:
            feedback = AgentRunFeedback(
                id=new_id("agfb"),
                tenant_id=self.tenant.tenant_id,
                agent_run_id=run_id,
                user_id=user,
                rating=rating,
                comment=comment,
                created_at=now,
                updated_at=now,
            )
            self.session.add(feedback)
        else:
            feedback.rating, feedback.comment, feedback.updated_at = rating, comment, now
        await self.session.commit()
        return feedback
