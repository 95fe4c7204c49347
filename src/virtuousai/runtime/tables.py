"""ActionRun and its events: the durable record of one unit of work, from whatever origin.

The queue is this table: workers claim ``PENDING`` rows through a small partial index, so the growing history of
finished runs (the audit trail) never slows claiming down.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.runtime.states import RunStatus
from virtuousai.store.base import Base, TenantMixin, tenant_fk, tenant_table_args
from virtuousai.timeutil import utcnow

# The kind of the events that record a transition (``{from, to, …}``); progress events carry a kind's own names.
STATUS_EVENT = "status"


class RunOrigin(enum.StrEnum):
    api = "api"
    automation = "automation"  # parent_run_id (an automation run), step_key
    agent = "agent"  # parent_run_id (an agent run)
    chat = "chat"  # parent_run_id (the turn's agent run), turn_id, message_id
    schedule = "schedule"  # trigger_id


class ActionRun(TenantMixin, Base):
    __tablename__ = "action_runs"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
        # The hot path: only claimable rows are in this index, however long the history grows.
        sa.Index(
            "ix_action_runs_claimable",
            sa.text("priority DESC"),
            "available_at",
            "id",
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        ),
        # Heartbeats, the watchdog and the per-organization limit read only running rows.
        sa.Index(
            "ix_action_runs_running",
            "tenant_id",
            "lease_expires_at",
            postgresql_where=sa.text("status = 'RUNNING'"),
            sqlite_where=sa.text("status = 'RUNNING'"),
        ),
        sa.Index("ix_action_runs_tenant_status", "tenant_id", "status", "id"),
        # A parent run's pass: is any run of this step still active, which failed first (a few seeks per step).
        sa.Index(
            "ix_action_runs_parent",
            "tenant_id",
            "parent_run_id",
            "step_key",
            "status",
            postgresql_where=sa.text("parent_run_id IS NOT NULL"),
            sqlite_where=sa.text("parent_run_id IS NOT NULL"),
        ),
    )

    kind: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[RunStatus] = mapped_column(sa.Enum(RunStatus, native_enum=False, length=24))
    inputs: Mapped[dict[str, Any]] = mapped_column()
    inputs_hash: Mapped[str] = mapped_column(sa.String(64))
    output: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # {type, message}
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    priority: Mapped[int] = mapped_column(default=0)  # higher runs first
    timeout_s: Mapped[float] = mapped_column()
    max_attempts: Mapped[int] = mapped_column()
    attempt: Mapped[int] = mapped_column(default=0)  # claims so far; the running attempt's number

    origin: Mapped[RunOrigin] = mapped_column(sa.Enum(RunOrigin, native_enum=False, length=16))
    # The run whose child this is (an automation run ``arun_…``, an agent run ``agrun_…``): the runtime tells it
    # when this run ends (``Wakeup.parent_run_id``) and knows nothing else about it.
    parent_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    step_key: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    turn_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    message_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    trigger_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    template_snapshot: Mapped[dict[str, Any] | None] = mapped_column(default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)  # not claimable before (retry backoff)
    started_at: Mapped[datetime | None] = mapped_column(default=None)  # start of the latest attempt
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    lease_owner: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Fencing token: +1 on every claim. Every worker write carries it, so a worker that lost the run writes nothing.
    lease_token: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    # Events are numbered per run; this counter hands out the numbers (atomically, inside each guarded UPDATE).
    last_event_seq: Mapped[int] = mapped_column(default=0)

    requires_approval: Mapped[bool] = mapped_column(default=False)
    approved_inputs_hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    approved_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    rejected_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    rejected_at: Mapped[datetime | None] = mapped_column(default=None)


class ActionRunEvent(TenantMixin, Base):
    """One transition or progress event of a run, numbered ``seq`` = 1, 2, … (the SSE event id)."""

    __tablename__ = "action_run_events"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("run_id", "seq"),
        tenant_fk(("tenant_id", "run_id"), "action_runs", ondelete="CASCADE"),
    )

    run_id: Mapped[str] = mapped_column(sa.String(40))
    seq: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(sa.String(100))  # "status" for transitions; the kind's own names for progress
    data: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
