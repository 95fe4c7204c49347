"""The state table and the one transition function: every illegal move is refused and changes nothing."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from tests.runtime.conftest import Harness
from virtuousai.runtime.states import ALLOWED, TERMINAL, IllegalTransition, RunStatus, check_transition
from virtuousai.runtime.tables import ActionRun
from virtuousai.runtime.transition import LeaseLost, RunHandle, transition
from virtuousai.store.engine import transaction


def test_terminal_states_allow_no_move_and_every_other_state_can_reach_one() -> None:
    assert frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}) == TERMINAL
    assert set(ALLOWED) == set(RunStatus)
    for status in set(RunStatus) - TERMINAL:
        assert ALLOWED[status] & (TERMINAL | {RunStatus.PENDING, RunStatus.RUNNING})
    assert all(status.is_terminal for status in TERMINAL)


ILLEGAL = [(a, b) for a, b in itertools.product(RunStatus, RunStatus) if b not in ALLOWED[a]]


def test_check_transition_refuses_exactly_the_moves_missing_from_the_table() -> None:
    for current, target in itertools.product(RunStatus, RunStatus):
        if (current, target) in ILLEGAL:
            with pytest.raises(IllegalTransition):
                check_transition(current, target)
        else:
            check_transition(current, target)


async def test_every_illegal_transition_is_refused_and_changes_nothing(harness: Harness) -> None:
    run_id = await harness.create("echo", {})
    for current, target in ILLEGAL:
        async with transaction(harness.sessions) as session:
            await session.execute(sa.update(ActionRun).where(ActionRun.id == run_id).values(status=current))
        events_before = len(await harness.events(run_id))
        with pytest.raises(IllegalTransition):
            async with transaction(harness.sessions) as session:
                await transition(session, RunHandle(run_id, harness.tenant.tenant_id, current), target)
        run = await harness.get(run_id)
        assert run.status is current, (current, target)
        assert len(await harness.events(run_id)) == events_before


async def test_a_transition_from_a_state_the_run_is_not_in_raises_lease_lost(harness: Harness) -> None:
    run_id = await harness.create("echo", {})
    stale = RunHandle(run_id, harness.tenant.tenant_id, RunStatus.RUNNING)  # it is still PENDING
    with pytest.raises(LeaseLost):
        async with transaction(harness.sessions) as session:
            await transition(session, stale, RunStatus.COMPLETED)
    assert (await harness.get(run_id)).status is RunStatus.PENDING


async def test_another_tenants_run_cannot_be_moved(harness: Harness) -> None:
    other = await harness.new_tenant()
    run_id = await harness.create("echo", {}, tenant=other)
    wrong_tenant = RunHandle(run_id, harness.tenant.tenant_id, RunStatus.PENDING)
    with pytest.raises(LeaseLost):
        async with transaction(harness.sessions) as session:
            await transition(session, wrong_tenant, RunStatus.CANCELLED)
    assert (await harness.get(run_id)).status is RunStatus.PENDING
