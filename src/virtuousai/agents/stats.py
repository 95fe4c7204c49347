"""Execution statistics of an agent spec (seeds/002 "Performance and Evaluation"), computed from its runs."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.agents.states import AgentRunStatus
from virtuousai.agents.tables import AgentRun, AgentRunFeedback
from virtuousai.store.tenant import TenantContext


@dataclass(frozen=True)
class SpecStats:
    total_runs: int = 0
    success_rate: float = 0.0  # completed / total, 0..1
    avg_duration_ms: float = 0.0  # of the finished runs, from start to end (waiting for approvals included)
    crystallization_count: int = 0  # the crystallization issue fills it in
    feedback_up: int = 0
    feedback_down: int = 0


async def compute_spec_stats(session: AsyncSession, tenant: TenantContext, spec_id: str) -> SpecStats:
    """The spec's statistics across all its versions, delegated runs included."""
    of_spec = (AgentRun.tenant_id == tenant.tenant_id, AgentRun.spec_id == spec_id)
    counts = sa.select(
        sa.func.count(), sa.func.count().filter(AgentRun.status == AgentRunStatus.COMPLETED.value)
    ).where(*of_spec)
    total, completed = (await session.execute(counts)).one()
    # Durations in Python: the two dialects subtract timestamps differently, and this reads two columns per run.
    timings = sa.select(AgentRun.started_at, AgentRun.finished_at).where(
        *of_spec, AgentRun.started_at.is_not(None), AgentRun.finished_at.is_not(None)
    )
    rows = (await session.execute(timings)).tuples().all()
    durations = [(end - start).total_seconds() * 1000 for start, end in rows if start is not None and end is not None]
    ratings = (
        sa.select(AgentRunFeedback.rating, sa.func.count())
        .join(
            AgentRun,
            sa.and_(AgentRun.tenant_id == AgentRunFeedback.tenant_id, AgentRun.id == AgentRunFeedback.agent_run_id),
        )
        .where(*of_spec)
        .group_by(AgentRunFeedback.rating)
    )
    feedback = dict((await session.execute(ratings)).tuples().all())
    return SpecStats(
        total_runs=int(total),
        success_rate=completed / total if total else 0.0,
        avg_duration_ms=sum(durations) / len(durations) if durations else 0.0,
        feedback_up=int(feedback.get("up", 0)),
        feedback_down=int(feedback.get("down", 0)),
    )
