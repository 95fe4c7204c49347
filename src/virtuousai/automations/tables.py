"""Automations and their immutable versions.

An automation is a name, a slug and a pointer to its current version; every change of the spec is a new
``AutomationVersion`` (numbered 1, 2, … with a content hash), and every run pins the version it executes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from virtuousai.automations.states import AutomationRunStatus, StepStatus
from virtuousai.store.base import Base, JSONDoc, TenantMixin, TimestampMixin, tenant_fk, tenant_table_args
from virtuousai.timeutil import utcnow


class Automation(TenantMixin, TimestampMixin, Base):
    __tablename__ = "automations"
    __table_args__ = tenant_table_args(
        # A deleted automation frees its slug; its versions stay, so its runs keep their history.
        sa.Index(
            "uq_automations_tenant_slug_live",
            "tenant_id",
            "slug",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
    )

    slug: Mapped[str] = mapped_column(sa.String(63))
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    current_version: Mapped[int] = mapped_column(default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when a kind=automation template created it: instantiations of that template (only) add versions to it.
    template_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)


class AutomationVersion(TenantMixin, Base):
    """One immutable spec of an automation. Never updated, never deleted while the automation exists."""

    __tablename__ = "automation_versions"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("automation_id", "version"),
        tenant_fk(("tenant_id", "automation_id"), "automations", ondelete="CASCADE"),
    )

    automation_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AutomationRun(TenantMixin, Base):
    """One execution of one pinned version. ``trigger``/``tick`` record what started it (cron: the tick)."""

    __tablename__ = "automation_runs"
    __table_args__ = tenant_table_args(
        tenant_fk(("tenant_id", "automation_id"), "automations", ondelete="CASCADE"),
        tenant_fk(("tenant_id", "version_id"), "automation_versions", ondelete="CASCADE"),
        sa.Index("ix_automation_runs_active", "status", "id"),
        sa.Index("ix_automation_runs_automation", "tenant_id", "automation_id", "id"),
    )

    automation_id: Mapped[str] = mapped_column(sa.String(40))
    version_id: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column()
    status: Mapped[AutomationRunStatus] = mapped_column(sa.Enum(AutomationRunStatus, native_enum=False, length=16))
    params: Mapped[dict[str, Any]] = mapped_column()
    trigger: Mapped[str] = mapped_column(sa.String(16))  # "manual" | "cron" | "retry" | "template"
    trigger_key: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    tick: Mapped[datetime | None] = mapped_column(default=None)
    retry_of: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_by: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    last_event_seq: Mapped[int] = mapped_column(default=0)
    # Started by instantiating a kind=automation template: the TemplateSnapshot (version, params, rendered spec).
    template_snapshot: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # {template ref: {template_id, version}} for the run's template steps, fixed when the run starts RUNNING.
    template_pins: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class AutomationStepRun(TenantMixin, Base):
    """The state of one step in one run. Its ActionRuns carry ``automation_run_id`` and ``step_key``."""

    __tablename__ = "automation_step_runs"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("automation_run_id", "step_key"),
        tenant_fk(("tenant_id", "automation_run_id"), "automation_runs", ondelete="CASCADE"),
    )

    automation_run_id: Mapped[str] = mapped_column(sa.String(40))
    step_key: Mapped[str] = mapped_column(sa.String(64))
    position: Mapped[int] = mapped_column()  # topological order, for display
    status: Mapped[StepStatus] = mapped_column(sa.Enum(StepStatus, native_enum=False, length=16))
    item_count: Mapped[int | None] = mapped_column(default=None)  # for_each: how many items
    launched: Mapped[int] = mapped_column(default=0, server_default="0")  # ActionRuns created: items 0 … launched-1
    output: Mapped[Any] = mapped_column(JSONDoc, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    reason: Mapped[str | None] = mapped_column(sa.String(500), default=None)  # why SKIPPED / CANCELLED
    attempts: Mapped[int] = mapped_column(default=0)
    reused_from: Mapped[str | None] = mapped_column(sa.String(40), default=None)  # retry: the run it came from
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AutomationRunEvent(TenantMixin, Base):
    """A run or step transition, numbered ``seq`` = 1, 2, … per run (the SSE event id)."""

    __tablename__ = "automation_run_events"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("automation_run_id", "seq"),
        tenant_fk(("tenant_id", "automation_run_id"), "automation_runs", ondelete="CASCADE"),
    )

    automation_run_id: Mapped[str] = mapped_column(sa.String(40))
    seq: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(sa.String(32))  # "run" | "step"
    data: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AutomationTriggerTick(TenantMixin, Base):
    """One cron tick of one trigger, claimed by exactly one scheduler: the unique row is the claim."""

    __tablename__ = "automation_trigger_ticks"
    __table_args__ = tenant_table_args(
        sa.UniqueConstraint("automation_id", "trigger_key", "tick"),
        tenant_fk(("tenant_id", "automation_id"), "automations", ondelete="CASCADE"),
    )

    automation_id: Mapped[str] = mapped_column(sa.String(40))
    trigger_key: Mapped[str] = mapped_column(sa.String(64))
    tick: Mapped[datetime] = mapped_column()
    outcome: Mapped[str] = mapped_column(sa.String(16))  # "started" | "queued" | "skipped" | "missed"
    automation_run_id: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
