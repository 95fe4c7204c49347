"""Execution statistics of an agent spec (seeds/002 "Performance and Evaluation").

Computed from the run tables, which the agent-runtime issue adds: until then there are no runs, so every figure is
zero. This is the single function that issue fills in; the API and its response shape are final.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.store.tenant import TenantContext


@dataclass(frozen=True)
class SpecStats:
    total_runs: int = 0
    success_rate: float = 0.0  # completed / total, 0..1
    avg_duration_ms: float = 0.0
    crystallization_count: int = 0
    feedback_up: int = 0
    feedback_down: int = 0


async def compute_spec_stats(session: AsyncSession, tenant: TenantContext, spec_id: str) -> SpecStats:
    """The spec's statistics across all its versions. Zeros until agent runs exist (see module docstring)."""
    return SpecStats()
