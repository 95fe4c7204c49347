"""The automation hook on run completions: every process hears every run finish, so it must skip the runs no
automation waits on without touching the database, and still look up a run whose wake-up does not say whose it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from virtuousai.automations.background import AutomationServices
from virtuousai.config import Settings
from virtuousai.runtime.supervisor import Runtime
from virtuousai.store.drivers import Wakeup
from virtuousai.store.drivers.wakeups import PROCESS_ID


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the test runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


@pytest.fixture
def services(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> AutomationServices:
    return AutomationServices(Runtime(engine, sessions, settings))


@pytest.mark.parametrize("origin", ["api", "agent", "chat", "schedule"])
async def test_a_run_no_automation_waits_on_costs_no_query(
    services: AutomationServices, statements: list[str], origin: str
) -> None:
    await services.on_run_finished(Wakeup("finished", "run_01", tenant_id="org_01", origin=origin))
    assert statements == []


async def test_a_run_of_unknown_origin_is_looked_up(services: AutomationServices, statements: list[str]) -> None:
    await services.on_run_finished(Wakeup("finished", "run_01"))
    assert any("action_runs" in statement for statement in statements)


async def test_a_run_another_process_executed_is_left_to_that_process(
    services: AutomationServices, statements: list[str]
) -> None:
    """Its executor's process advances the automation run (the sweep covers a process that died meanwhile)."""
    elsewhere = Wakeup(
        "finished", "run_01", tenant_id="org_01", origin="automation", automation_run_id="arun_01", publisher="p1x0"
    )
    await services.on_run_finished(elsewhere)
    assert statements == []
    here = Wakeup(
        "finished", "run_01", tenant_id="org_01", origin="automation", automation_run_id="arun_01", publisher=PROCESS_ID
    )
    await services.on_run_finished(here)
    assert any("automation_runs" in statement for statement in statements)  # this process's own: it runs the pass


def test_the_publisher_survives_the_wire_and_old_payloads_still_decode() -> None:
    wakeup = Wakeup("finished", "run_01", tenant_id="org_01", origin="automation", publisher=PROCESS_ID)
    assert Wakeup.decode(wakeup.encode()) == wakeup
    assert Wakeup.decode("finished:run_01:org_01:api") == Wakeup("finished", "run_01", tenant_id="org_01", origin="api")
