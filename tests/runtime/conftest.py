"""Runtime fixtures: fast settings, an organization, and in-process workers started as asyncio tasks.

Every runtime test runs on SQLite and on PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import eventually
from virtuousai.actions.registry import load_registry
from virtuousai.actions.service import ActionRunService
from virtuousai.config import Settings
from virtuousai.orgs.service import create_organization
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.queue import RunQueue
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.runtime.watchdog import LeaseWatchdog, WatchdogConfig
from virtuousai.runtime.worker import Worker
from virtuousai.store.drivers import RunQueueDriver, driver_for, hub_for
from virtuousai.store.tenant import TenantContext

TEST_KINDS = "tests.runtime.kinds_for_tests"

FAST: dict[str, Any] = {
    "lease_s": 1.5,
    "poll_interval_s": 0.05,
    "cancel_grace_s": 0.3,
    "drain_timeout_s": 0.5,
    "worker_concurrency": 4,
    "kind_modules": (TEST_KINDS,),
}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", **FAST)


@dataclass
class Harness:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    registry: KindRegistry
    driver: RunQueueDriver
    tenant: TenantContext
    _workers: list[tuple[Worker, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def queue(self) -> RunQueue:
        return RunQueue(self.sessions, self.driver)

    def watchdog(self) -> LeaseWatchdog:
        return LeaseWatchdog(self.sessions, self.driver, self.registry, WatchdogConfig(interval_s=1.0))

    async def new_tenant(self, name: str = "Other") -> TenantContext:
        async with self.sessions() as session:
            created = await create_organization(session, name, f"o-{secrets.token_hex(4)}@example.com")
        return TenantContext(tenant_id=created.organization.id, user_id=created.owner.id)

    async def create(self, kind: str, inputs: dict[str, Any], *, tenant: TenantContext | None = None, **kw: Any) -> str:
        async with self.sessions() as session:
            created = await ActionRunService(session, tenant or self.tenant, self.registry).create(
                kind=kind, inputs=inputs, **kw
            )
        return created.run.id

    async def get(self, run_id: str) -> ActionRun:
        async with self.sessions() as session:
            run = await session.scalar(sa.select(ActionRun).where(ActionRun.id == run_id))
            await session.commit()  # ends the read (SQLite: frees the write lock); keeps the objects loaded
        assert run is not None
        return run

    async def events(self, run_id: str) -> list[ActionRunEvent]:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    sa.select(ActionRunEvent).where(ActionRunEvent.run_id == run_id).order_by(ActionRunEvent.seq)
                )
            ).all()
            await session.commit()  # ends the read (SQLite: frees the write lock); keeps the objects loaded
        return list(rows)

    async def wait_for(self, run_id: str, statuses: Iterable[RunStatus], timeout: float = 10.0) -> ActionRun:
        wanted = set(statuses)

        async def check() -> ActionRun | None:
            run = await self.get(run_id)
            return run if run.status in wanted else None

        result: ActionRun = await eventually(check, timeout=timeout, what=f"{run_id} to be in {wanted}")
        return result

    def start_worker(self, **overrides: Any) -> Worker:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        worker = Worker(
            sessions=self.sessions,
            driver=self.driver,
            hub=hub_for(self.engine.url),
            registry=self.registry,
            settings=settings,
            concurrency=overrides.get("worker_concurrency", settings.worker_concurrency),
        )
        self._workers.append((worker, asyncio.create_task(worker.run())))
        return worker

    async def stop_workers(self) -> None:
        for worker, _task in self._workers:
            worker.stop()
        await asyncio.gather(*(task for _, task in self._workers), return_exceptions=True)
        self._workers.clear()


@pytest.fixture
async def harness(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[Harness]:
    async with sessions() as session:
        created = await create_organization(session, "Runtime Org", f"rt-{secrets.token_hex(4)}@example.com")
    tenant = TenantContext(tenant_id=created.organization.id, user_id=created.owner.id, role="owner")
    h = Harness(
        engine=engine,
        sessions=sessions,
        settings=settings,
        registry=load_registry(settings.kind_modules),
        driver=driver_for(engine),
        tenant=tenant,
    )
    try:
        yield h
    finally:
        await h.stop_workers()
