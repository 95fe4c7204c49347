"""Agent specs and their immutable versions.

``agent_specs`` is the stable identity (id, slug) with the current version's summary for listing; every create or
update appends an ``agent_spec_versions`` row that never changes again, so a run can pin the exact version it ran.
A deleted spec keeps its versions (runs refer to them) and frees its slug.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.store.base import Base, JSONDoc, TenantMixin, tenant_fk, tenant_table_args


class AgentSpec(TenantMixin, Base):
    __tablename__ = "agent_specs"
    __table_args__ = tenant_table_args(
        # One live spec per slug in an organization; deleted ones do not count.
        sa.Index(
            "uq_agent_specs_live_slug",
            "tenant_id",
            "slug",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    slug: Mapped[str] = mapped_column(sa.String(63))
    name: Mapped[str] = mapped_column(sa.String(200))
    mode: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    current_version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class AgentSpecVersion(TenantMixin, Base):
    __tablename__ = "agent_spec_versions"
    __table_args__ = tenant_table_args(
        tenant_fk(("tenant_id", "spec_id"), "agent_specs", ondelete="CASCADE"),
        sa.UniqueConstraint("spec_id", "version"),
    )

    spec_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column(sa.Integer)
    markdown: Mapped[str] = mapped_column(sa.Text)
    # The parsed document, so readers (API, runtime) need not parse again.
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(63))
    mode: Mapped[str] = mapped_column(sa.String(16))
    model: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    tools: Mapped[list[Any]] = mapped_column()
    sub_agents: Mapped[list[Any]] = mapped_column()
    permissions: Mapped[dict[str, Any]] = mapped_column()
    description: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    instructions: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)


class AgentRun(TenantMixin, Base):
    """One durable run of one agent spec version on one input (seeds/002). Its steps are its model calls, tool
    calls and delegations; it is a parent run of the orchestrator (``agents/progress.py``)."""

    __tablename__ = "agent_runs"
    __table_args__ = tenant_table_args(
        tenant_fk(("tenant_id", "spec_id"), "agent_specs", ondelete="CASCADE"),
        sa.Index("ix_agent_runs_tenant_spec", "tenant_id", "spec_id", "id"),
        sa.Index("ix_agent_runs_active", "status", "id"),
        sa.Index("ix_agent_runs_parent", "tenant_id", "parent_run_id"),
    )

    spec_id: Mapped[str] = mapped_column(sa.String(40))
    spec_version_id: Mapped[str] = mapped_column(sa.String(40))
    spec_version: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(24))
    reason: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    detail: Mapped[str | None] = mapped_column(sa.Text, default=None)
    input: Mapped[str] = mapped_column(sa.Text)
    context: Mapped[dict[str, Any]] = mapped_column()
    output: Mapped[str | None] = mapped_column(sa.Text, default=None)
    # Delegation: the run that called this one (call_agent), and how deep the chain is (0: started directly).
    parent_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    depth: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Chat (a later issue): the turn and message this run answers.
    turn_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    message_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    # Budgets and usage: the sum of every model attempt's cost (failed ones too) and of delegated runs' costs.
    cost: Mapped[str] = mapped_column(sa.String(40), default="0")  # a decimal, USD
    cost_unknown: Mapped[bool] = mapped_column(default=False)  # an attempt's price was unknown
    # The most it may cost (USD): the spec's max_cost_per_run, or less — what its caller had left, for a delegated run.
    budget: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    input_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(sa.Integer, default=0)
    model_calls: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The wall-clock limit counts RUNNING time only: the time of earlier stretches, and when this one began.
    running_s: Mapped[float] = mapped_column(sa.Float, default=0.0)
    running_since: Mapped[datetime | None] = mapped_column(default=None)
    # The write tool calls waiting for a human, here or in delegated runs (what GET shows and approve acts on).
    pending_approvals: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    last_event_seq: Mapped[int] = mapped_column(sa.Integer, default=0)  # the run's version: every change, an event


class AgentRunStep(TenantMixin, Base):
    """One step: a model call, a tool call or a delegation, with the steps it came from (the DAG)."""

    __tablename__ = "agent_run_steps"
    __table_args__ = tenant_table_args(
        tenant_fk(("tenant_id", "agent_run_id"), "agent_runs", ondelete="CASCADE"),
        sa.UniqueConstraint("agent_run_id", "position"),
    )

    agent_run_id: Mapped[str] = mapped_column(sa.String(40))
    position: Mapped[int] = mapped_column(sa.Integer)  # 0, 1, … in the order the steps were made
    kind: Mapped[str] = mapped_column(sa.String(16))  # model | tool | delegation
    status: Mapped[str] = mapped_column(sa.String(24))
    parents: Mapped[list[Any]] = mapped_column()  # step ids: a tool call's model call; a model call's tool results
    tool: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    tool_call_id: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    args: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    action_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    child_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)  # a delegation's AgentRun
    # A model call: its response (pydantic-ai's message JSON); a tool call: what the model was given back.
    result: Mapped[Any] = mapped_column(JSONDoc, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    retries: Mapped[int] = mapped_column(sa.Integer, default=0)  # a model call: retry prompts in a row before it
    cost: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    input_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AgentRunEvent(TenantMixin, Base):
    """A run's events (``run_started``, ``step_started``, …), numbered ``seq`` = 1, 2, … (the SSE event id)."""

    __tablename__ = "agent_run_events"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("agent_run_id", "seq"),
        tenant_fk(("tenant_id", "agent_run_id"), "agent_runs", ondelete="CASCADE"),
    )

    agent_run_id: Mapped[str] = mapped_column(sa.String(40))
    seq: Mapped[int] = mapped_column(sa.Integer)
    kind: Mapped[str] = mapped_column(sa.String(32))
    data: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()


class AgentRunFeedback(TenantMixin, Base):
    """A user's thumbs up or down on a run (one per user, replaceable)."""

    __tablename__ = "agent_run_feedback"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("agent_run_id", "user_id"),
        tenant_fk(("tenant_id", "agent_run_id"), "agent_runs", ondelete="CASCADE"),
    )

    agent_run_id: Mapped[str] = mapped_column(sa.String(40))
    user_id: Mapped[str] = mapped_column(sa.String(40))
    rating: Mapped[str] = mapped_column(sa.String(8))  # up | down
    comment: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
