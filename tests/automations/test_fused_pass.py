"""An automation step's outcome recorded in the same transaction as the pass it triggers
(``AutomationEngine.finish_and_advance``), and every way that path steps aside.

The worker's engine takes the first pass of a run after the API created its first step (a full pass: it has not
seen the run yet); from then on each step's outcome and the next step's creation are one transaction, as long as
the run did not move in between. A run that moved (another process's pass, a cancel) and a lost lease fall back
to what they would be without it: the outcome alone, then a full pass — or nothing at all.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.automations.conftest import Automations, steps_by_key
from tests.automations.test_handoff import action_run, events, started_step, steal_adopted_run, until
from virtuousai.automations.engine import AutomationEngine
from virtuousai.automations.tables import AutomationRun, AutomationRunEvent
from virtuousai.config import Settings
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.transition import Finish
from virtuousai.store.drivers.wakeups import PROCESS_ID
from virtuousai.store.engine import transaction


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No sweep after startup: its passes would take the run's cached state at random moments.
    return settings.model_copy(update={"automation_sweep_interval_s": 3600.0})


def engine_of(app: FastAPI) -> AutomationEngine:
    engine = app.state.automations.engine
    assert isinstance(engine, AutomationEngine)
    return engine


async def fused_passes_reach(app: FastAPI, count: int) -> None:
    """The counter moves just after the commit that the API may already have shown; it must then stop there."""
    engine = engine_of(app)

    async def reached() -> bool:
        return engine.fused_passes >= count

    await until(reached, f"{count} fused passes", timeout_s=5.0)
    assert engine.fused_passes == count


async def run_events(app: FastAPI, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    async with app.state.sessions() as session:
        stmt = (
            sa.select(AutomationRunEvent.seq, AutomationRunEvent.kind, AutomationRunEvent.data)
            .where(AutomationRunEvent.automation_run_id == run_id)
            .order_by(AutomationRunEvent.seq)
        )
        rows = (await session.execute(stmt)).tuples().all()
        await session.commit()
    return [(seq, kind, dict(data)) for seq, kind, data in rows]


async def test_a_chain_records_each_outcome_with_the_pass_it_triggers(app: FastAPI, automations: Automations) -> None:
    # Each step reads the one before it: the outputs a fused pass hands on come from the outcome in memory.
    steps: list[dict[str, Any]] = [{"key": "s0", "action": "echo", "inputs": {"n": 0}}]
    steps += [
        {
            "key": f"s{i}",
            "action": "echo",
            "inputs": {"n": f"${{{{ steps.s{i - 1}.output.n + 1 }}}}"},
            "depends_on": [f"s{i - 1}"],
        }
        for i in range(1, 6)
    ]
    await automations.create(steps)
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "COMPLETED", run
    assert [steps_by_key(run)[f"s{i}"]["output"] for i in range(6)] == [{"n": i} for i in range(6)]
    # s0 was created by the API and claimed: its outcome takes the full pass that caches the run here; the
    # outcomes of s1…s5 each came with their pass (s5's ended the run).
    await fused_passes_reach(app, 5)
    # Nothing lost or doubled: one event per move, numbered without gaps, in order.
    recorded = await run_events(app, run["id"])
    assert [seq for seq, _, _ in recorded] == list(range(1, len(recorded) + 1))
    moves = [(data.get("step"), data["to"]) for _, _, data in recorded]
    expected = [(None, "PENDING"), (None, "RUNNING")]
    for i in range(6):
        expected += [(f"s{i}", "RUNNING"), (f"s{i}", "COMPLETED")]
    expected.append((None, "COMPLETED"))
    assert moves == expected
    for i in range(6):
        [action_run_id] = steps_by_key(run)[f"s{i}"]["action_run_ids"]
        assert [e["to"] for e in await events(app, action_run_id)][-1] == "COMPLETED"


async def test_a_run_that_moved_meanwhile_gets_its_outcome_alone_then_a_full_pass(
    app: FastAPI, automations: Automations
) -> None:
    await automations.create(
        [
            {"key": "first", "action": "echo"},
            {"key": "second", "action": "sleep", "inputs": {"seconds": 2.0}, "depends_on": ["first"]},
            {"key": "third", "action": "echo", "depends_on": ["second"]},
        ]
    )
    started = await automations.start()
    second = await started_step(automations, started["id"], "second")
    before = engine_of(app).fused_passes
    # As another process's pass would, while `second` runs: the run's event counter moves on.
    async with transaction(app.state.sessions) as session:
        await session.execute(
            sa.update(AutomationRun)
            .where(AutomationRun.id == started["id"])
            .values(last_event_seq=AutomationRun.last_event_seq + 1)
        )
    run = await automations.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    assert (await action_run(app, second)).status is RunStatus.COMPLETED
    # `second`'s outcome found the run moved: recorded alone, and the hook's full pass started `third`; its
    # outcome then came with its pass again.
    await fused_passes_reach(app, before + 1)


async def test_a_lost_lease_records_nothing_and_moves_nothing(app: FastAPI, automations: Automations) -> None:
    await automations.create(
        [
            {"key": "first", "action": "echo"},
            {"key": "second", "action": "sleep", "inputs": {"seconds": 30}, "depends_on": ["first"]},
        ]
    )
    started = await automations.start()
    second = await started_step(automations, started["id"], "second")
    control = await steal_adopted_run(app, second)
    events_before = await run_events(app, started["id"])
    finish = Finish(control.run, RunStatus.COMPLETED, {"attempt": control.run.attempt}, output={"slept_s": 0.0})
    assert await engine_of(app).finish_and_advance(finish, PROCESS_ID) is False
    stolen = await action_run(app, second)
    assert (stolen.status, stolen.lease_owner, stolen.output) == (RunStatus.RUNNING, "thief", None)
    assert await run_events(app, started["id"]) == events_before
    run = await automations.get(started["id"])
    assert steps_by_key(run)["second"]["status"] == "RUNNING"
    response = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert response.status_code == 200, response.text


async def test_a_pass_over_kept_steps_looks_at_the_running_ones_and_their_dependents(
    app: FastAPI, automations: Automations
) -> None:
    # A 40-step chain, then a `when` that is false: its dependent is skipped with it (all_success), and a step that
    # waits for all of them to be done runs anyway. Every pass but the first starts from the steps the previous one
    # left, so it looks at the running step and what its end makes ready: O(steps) for the whole run. Looking at
    # every step on every pass, as passes once did, would be ~n²/2 (~900 here).
    steps: list[dict[str, Any]] = [{"key": "s0", "action": "echo", "inputs": {"go": False}}]
    steps += [{"key": f"s{i}", "action": "echo", "depends_on": [f"s{i - 1}"]} for i in range(1, 40)]
    steps += [
        {"key": "gate", "action": "echo", "when": "${{ steps.s0.output.go }}", "depends_on": ["s39"]},
        {"key": "behind_gate", "action": "echo", "depends_on": ["gate"]},
        {"key": "last", "action": "echo", "depends_on": ["behind_gate"], "trigger": "all_done"},
    ]
    await automations.create(steps)
    engine = engine_of(app)
    evaluated_before = engine.steps_evaluated
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "COMPLETED", run
    statuses = {key: step["status"] for key, step in steps_by_key(run).items()}
    assert statuses == {f"s{i}": "COMPLETED" for i in range(40)} | {
        "gate": "SKIPPED",
        "behind_gate": "SKIPPED",
        "last": "COMPLETED",
    }
    await fused_passes_reach(app, engine.fused_passes)  # the last pass's counters are in
    # The first pass looks at all 43 steps; each later one at the step that ended and the one(s) it made ready.
    assert engine.steps_evaluated - evaluated_before <= 43 + 3 * 43
