"""Queries for agent runs, their steps, events and feedback: the API's reads, and what a pass reads and writes
(``progress.py``). Every read is of one tenant, but ``unfinished_runs`` (the sweep's, across tenants)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa

from virtuousai.agents.loop import Child, OrgConnection, RunInfo, Step, SubAgent
from virtuousai.agents.states import AgentRunStatus, StepKind, StepStatus
from virtuousai.agents.tables import (
    AgentRun,
    AgentRunEvent,
    AgentRunFeedback,
    AgentRunStep,
    AgentSpec,
    AgentSpecVersion,
)
from virtuousai.connections.tables import Connection
from virtuousai.llm.providers import LLM_PROVIDERS
from virtuousai.orgs.tables import Organization
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.runtime.transition import Finish
from virtuousai.store.drivers import Rows
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantRepository

OPEN_STATUSES = [AgentRunStatus.PENDING, AgentRunStatus.RUNNING, AgentRunStatus.AWAITING_APPROVAL]

# What a pass reads, built once (building a select costs more than its round trip).
# The organization's LLM connections come with the run, not in a query of their own: a pass that makes a model call
# names them all (the chain orders them), and one round trip less per pass is ~0.5 ms of an agent run's step.
# Ids hold no comma.
_LLM_CONNECTION_IDS = (
    sa.select(sa.func.aggregate_strings(Connection.id, ","))
    .where(Connection.tenant_id == AgentRun.tenant_id, Connection.provider.in_(LLM_PROVIDERS))
    .scalar_subquery()
)
_RUN_INFO = (
    sa.select(
        AgentRun.id,
        AgentRun.tenant_id,
        AgentRun.spec_id,
        AgentRun.spec_version,
        AgentRun.status,
        AgentRun.input,
        AgentRun.context,
        AgentRun.depth,
        AgentRun.parent_run_id,
        AgentRun.turn_id,
        AgentRun.message_id,
        AgentRun.budget,
        AgentRun.cost,
        AgentRun.cost_unknown,
        AgentRun.input_tokens,
        AgentRun.output_tokens,
        AgentRun.tool_calls,
        AgentRun.model_calls,
        AgentRun.running_s,
        AgentRun.running_since,
        AgentRun.cancel_requested_at.is_not(None),
        AgentRun.last_event_seq,
        AgentRun.pending_approvals,
        AgentRun.spec_version_id,
        Organization.settings,
        _LLM_CONNECTION_IDS,
    )
    .join(Organization, Organization.id == AgentRun.tenant_id)
    .where(AgentRun.tenant_id == sa.bindparam("tenant_id"), AgentRun.id == sa.bindparam("run_id"))
)
_STEPS = (
    sa.select(
        AgentRunStep.id,
        AgentRunStep.position,
        AgentRunStep.kind,
        AgentRunStep.status,
        AgentRunStep.parents,
        AgentRunStep.tool,
        AgentRunStep.tool_call_id,
        AgentRunStep.args,
        AgentRunStep.action_run_id,
        AgentRunStep.child_run_id,
        AgentRunStep.result,
        AgentRunStep.error,
        AgentRunStep.retries,
        AgentRunStep.cost,
        AgentRunStep.input_tokens,
        AgentRunStep.output_tokens,
        AgentRunStep.started_at,
        AgentRunStep.finished_at,
    )
    .where(AgentRunStep.tenant_id == sa.bindparam("tenant_id"), AgentRunStep.agent_run_id == sa.bindparam("run_id"))
    .order_by(AgentRunStep.position)
)
_ACTION_CHILDREN = sa.select(
    ActionRun.id,
    ActionRun.status,
    sa.type_coerce(sa.case((ActionRun.status == RunStatus.COMPLETED, ActionRun.output)), ActionRun.output.type),
    ActionRun.error,
    ActionRun.rejected_at.is_not(None),
).where(ActionRun.tenant_id == sa.bindparam("tenant_id"), ActionRun.id.in_(sa.bindparam("ids", expanding=True)))
_AGENT_CHILDREN = sa.select(
    AgentRun.id,
    AgentRun.status,
    AgentRun.output,
    AgentRun.reason,
    AgentRun.detail,
    AgentRun.cost,
    AgentRun.cost_unknown,
    AgentRun.pending_approvals,
).where(AgentRun.tenant_id == sa.bindparam("tenant_id"), AgentRun.id.in_(sa.bindparam("ids", expanding=True)))
_ORG_CONNECTIONS = sa.select(Connection.id, Connection.slug, Connection.provider, Connection.is_default).where(
    Connection.tenant_id == sa.bindparam("tenant_id")
)


class AgentRunRepository(TenantRepository[AgentRun]):
    model = AgentRun

    # -- the API's reads ------------------------------------------------------------------------------------------

    async def get_fresh(self, run_id: str) -> AgentRun | None:
        result: AgentRun | None = await self.session.scalar(
            self.base_query().where(AgentRun.id == run_id).execution_options(populate_existing=True)
        )
        return result

    async def status_of(self, run_id: str) -> AgentRunStatus | None:
        stmt = sa.select(AgentRun.status).where(AgentRun.tenant_id == self.tenant_id, AgentRun.id == run_id)
        found = await self.session.scalar(stmt)
        return None if found is None else AgentRunStatus(found)

    async def list_runs(
        self,
        page: PageRequest,
        *,
        spec_id: str | None = None,
        status: AgentRunStatus | None = None,
        parent_run_id: str | None = None,
    ) -> PageResult[AgentRun]:
        stmt = self.base_query()
        if spec_id is not None:
            stmt = stmt.where(AgentRun.spec_id == spec_id)
        if status is not None:
            stmt = stmt.where(AgentRun.status == status.value)
        if parent_run_id is not None:
            stmt = stmt.where(AgentRun.parent_run_id == parent_run_id)
        return await self.paginate(stmt, page)

    async def steps(self, run_id: str) -> Sequence[AgentRunStep]:
        stmt = (
            sa.select(AgentRunStep)
            .where(AgentRunStep.tenant_id == self.tenant_id, AgentRunStep.agent_run_id == run_id)
            .order_by(AgentRunStep.position)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).all()

    async def events_after(self, run_id: str, after_seq: int, limit: int = 500) -> Sequence[AgentRunEvent]:
        stmt = (
            sa.select(AgentRunEvent)
            .where(AgentRunEvent.tenant_id == self.tenant_id, AgentRunEvent.agent_run_id == run_id)
            .where(AgentRunEvent.seq > after_seq)
            .order_by(AgentRunEvent.seq)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def narration_after(self, action_run_id: str, after_seq: int) -> Sequence[ActionRunEvent]:
        """The ``narration`` progress events of a model call's ActionRun after ``after_seq`` (its own numbering)."""
        stmt = (
            sa.select(ActionRunEvent)
            .where(ActionRunEvent.tenant_id == self.tenant_id, ActionRunEvent.run_id == action_run_id)
            .where(ActionRunEvent.kind == "narration", ActionRunEvent.seq > after_seq)
            .order_by(ActionRunEvent.seq)
        )
        return (await self.session.scalars(stmt)).all()

    async def event_at(self, run_id: str, seq: int) -> AgentRunEvent | None:
        stmt = sa.select(AgentRunEvent).where(
            AgentRunEvent.tenant_id == self.tenant_id, AgentRunEvent.agent_run_id == run_id, AgentRunEvent.seq == seq
        )
        result: AgentRunEvent | None = await self.session.scalar(stmt)
        return result

    async def feedback_of(self, run_id: str, user_id: str) -> AgentRunFeedback | None:
        stmt = sa.select(AgentRunFeedback).where(
            AgentRunFeedback.tenant_id == self.tenant_id,
            AgentRunFeedback.agent_run_id == run_id,
            AgentRunFeedback.user_id == user_id,
        )
        result: AgentRunFeedback | None = await self.session.scalar(stmt)
        return result

    # -- what a pass reads ----------------------------------------------------------------------------------------

    async def run_info(self, run_id: str) -> tuple[RunInfo, str, dict[str, Any], list[str]] | None:
        """The run as a plan sees it, its spec version id, its organization's settings and the ids of its LLM
        connections in id order (one row, no ORM)."""
        row = (await self.session.execute(_RUN_INFO, {"tenant_id": self.tenant_id, "run_id": run_id})).first()
        if row is None:
            return None
        values = list(row[:23])
        values[4] = AgentRunStatus(values[4])
        values[11] = None if values[11] is None else Decimal(values[11])
        values[12] = Decimal(values[12])
        values[22] = tuple(values[22] or ())
        llm_connections = sorted(str(row[25]).split(",")) if row[25] else []
        return RunInfo(*values), str(row[23]), dict(row[24] or {}), llm_connections

    async def step_infos(self, run_id: str) -> list[Step]:
        rows = (await self.session.execute(_STEPS, {"tenant_id": self.tenant_id, "run_id": run_id})).tuples().all()
        return [
            Step(
                id=r[0],
                position=r[1],
                kind=StepKind(r[2]),
                status=StepStatus(r[3]),
                parents=tuple(r[4] or ()),
                tool=r[5],
                tool_call_id=r[6],
                args=r[7],
                action_run_id=r[8],
                child_run_id=r[9],
                result=r[10],
                error=r[11],
                retries=r[12],
                cost=r[13],
                input_tokens=r[14],
                output_tokens=r[15],
                started_at=r[16],
                finished_at=r[17],
            )
            for r in rows
        ]

    async def children(self, steps: Sequence[Step], finishing: Finish | None = None) -> dict[str, Child]:
        """What the child of each open step is doing, by step id: its ActionRun's or its delegated run's.
        ``finishing``, an ActionRun's outcome written by the same transaction, is taken as it will be, unread."""
        open_steps = [step for step in steps if not step.status.is_terminal]
        actions = {s.action_run_id: s.id for s in open_steps if s.action_run_id}
        agents = {s.child_run_id: s.id for s in open_steps if s.child_run_id}
        found: dict[str, Child] = {}
        if finishing is not None and finishing.run.id in actions:
            output = finishing.output if finishing.to is RunStatus.COMPLETED else None
            found[actions.pop(finishing.run.id)] = Child(finishing.to.value, output=output, error=finishing.error)
        params = {"tenant_id": self.tenant_id}
        if actions:
            rows = (await self.session.execute(_ACTION_CHILDREN, params | {"ids": list(actions)})).tuples().all()
            for run_id, status, output, error, rejected in rows:
                found[actions[run_id]] = Child(str(status), output=output, error=error, rejected=bool(rejected))
        if agents:
            rows2 = (await self.session.execute(_AGENT_CHILDREN, params | {"ids": list(agents)})).tuples().all()
            for run_id, status, output, reason, detail, cost, unknown, pending in rows2:
                found[agents[run_id]] = Child(
                    str(status),
                    output=output,
                    reason=reason,
                    detail=detail,
                    cost=Decimal(cost),
                    cost_unknown=bool(unknown),
                    pending_approvals=tuple(pending or ()),
                )
        return found

    async def spec_markdown(self, version_id: str) -> str | None:
        stmt = sa.select(AgentSpecVersion.markdown).where(
            AgentSpecVersion.tenant_id == self.tenant_id, AgentSpecVersion.id == version_id
        )
        result: str | None = await self.session.scalar(stmt)
        return result

    async def sub_agents(self, slugs: Sequence[str]) -> dict[str, SubAgent]:
        """The live specs of these slugs at their current versions (a delegation runs the sub-agent's latest)."""
        if not slugs:
            return {}
        stmt = (
            sa.select(
                AgentSpec.slug,
                AgentSpec.id,
                AgentSpecVersion.id,
                AgentSpecVersion.version,
                AgentSpecVersion.permissions,
            )
            .join(
                AgentSpecVersion,
                sa.and_(
                    AgentSpecVersion.tenant_id == AgentSpec.tenant_id,
                    AgentSpecVersion.spec_id == AgentSpec.id,
                    AgentSpecVersion.version == AgentSpec.current_version,
                ),
            )
            .where(AgentSpec.tenant_id == self.tenant_id, AgentSpec.deleted_at.is_(None), AgentSpec.slug.in_(slugs))
        )
        found: dict[str, SubAgent] = {}
        for slug, spec_id, version_id, version, permissions in (await self.session.execute(stmt)).tuples().all():
            budget = (permissions or {}).get("max_cost_per_run")
            found[slug] = SubAgent(spec_id, version_id, version, slug, None if budget is None else Decimal(str(budget)))
        return found

    async def org_connections(self) -> tuple[OrgConnection, ...]:
        rows = (await self.session.execute(_ORG_CONNECTIONS, {"tenant_id": self.tenant_id})).tuples().all()
        return tuple(OrgConnection(str(i), s, str(p), bool(d)) for i, s, p, d in rows)

    # -- what a pass writes, all in one ``RunQueueDriver.write_together`` ------------------------------------------

    def run_update(self, run_id: str, *, seen_seq: int, values: dict[str, Any]) -> Rows:
        """The run's new state, only if it is still at the version the pass read (else it updates nothing)."""
        row = {"tenant_id": self.tenant_id, "id": run_id, **values}
        return Rows(_table(AgentRun), [row], key=("tenant_id", "id"), guard={"last_event_seq": seen_seq})

    def step_updates(self, rows: Sequence[dict[str, Any]]) -> Rows:
        return Rows(
            _table(AgentRunStep), [{"tenant_id": self.tenant_id, **row} for row in rows], key=("tenant_id", "id")
        )

    def cancel_requests(self, run_ids: Sequence[str], now: Any) -> Rows:
        rows = [{"tenant_id": self.tenant_id, "id": run_id, "cancel_requested_at": now} for run_id in run_ids]
        return Rows(_table(AgentRun), rows, key=("tenant_id", "id"))

    @staticmethod
    def inserts(model: Any, rows: Sequence[dict[str, Any]]) -> Rows:
        return Rows(_table(model), rows)


def _table(model: Any) -> sa.Table:
    return cast(sa.Table, model.__table__)


async def unfinished_runs(session: Any, limit: int = 10_000) -> list[tuple[str, str]]:
    """``(tenant_id, run_id)`` of every agent run not yet terminal, across tenants (the sweep's)."""
    stmt = (
        sa.select(AgentRun.tenant_id, AgentRun.id)
        .where(AgentRun.status.in_([s.value for s in OPEN_STATUSES]))
        .order_by(AgentRun.id)
        .limit(limit)
    )
    return [(str(t), str(i)) for t, i in (await session.execute(stmt)).all()]
