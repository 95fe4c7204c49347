"""How an engine pass reads and creates: outputs read only where an expression needs them, a fan-out's runs created
together (or not at all), keys held by foreign runs, and completions driving the run without any poll."""

from __future__ import annotations

import pytest

from tests.automation_fixtures import Automations, steps_by_key
from virtuousai.config import Settings


async def test_a_step_that_reads_steps_by_a_computed_key_sees_their_outputs(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "a", "action": "echo", "inputs": {"n": 1}},
            {"key": "b", "action": "echo", "inputs": {"n": 2}},
            {
                "key": "pick",
                "action": "echo",
                "depends_on": ["a", "b"],
                "inputs": {"picked": "${{ steps[params.which].output.n }}", "b": "${{ steps.b.output.n }}"},
            },
        ],
        parameters={"type": "object", "properties": {"which": {"type": "string"}}},
    )
    run = await automations.wait((await automations.start(params={"which": "a"}))["id"])
    assert run["status"] == "COMPLETED", run
    assert steps_by_key(run)["pick"]["output"] == {"picked": 1, "b": 2}


async def test_a_fan_out_with_an_invalid_item_creates_none_of_its_runs(automations: Automations) -> None:
    await automations.create(
        [{"key": "fan", "action": "sleep", "for_each": [0.01, 0.01, -1], "inputs": {"seconds": "${{ item }}"}}]
    )
    run = await automations.wait((await automations.start())["id"])
    fan = steps_by_key(run)["fan"]
    assert (run["status"], fan["status"], fan["error"]["type"], fan["error"]["item"]) == (
        "FAILED",
        "FAILED",
        "InvalidInputs",
        2,
    )
    assert fan["error"]["errors"][0]["loc"] == ["steps", "fan", "inputs", "seconds"]
    assert fan["action_run_ids"] == []  # validated before any was stored: no orphan runs of items 0 and 1


async def test_an_item_key_held_by_a_run_of_the_api_fails_the_step(automations: Automations) -> None:
    await automations.create(
        [
            # A write kind waits in AWAITING_APPROVAL: ``second`` cannot start before the test approves ``first``.
            {"key": "first", "action": "test_write", "inputs": {"value": "v"}},
            {"key": "second", "action": "echo", "depends_on": ["first"], "inputs": {"x": 1}},
        ]
    )
    started = await automations.start()
    waiting = await automations.wait(started["id"], until=lambda r: steps_by_key(r)["first"]["action_run_ids"])
    first = await automations.action_run(steps_by_key(waiting)["first"]["action_run_ids"][0])
    assert first["status"] == "AWAITING_APPROVAL"
    foreign = await automations.client.post(
        "/api/v1/action-runs",
        json={"kind": "echo", "inputs": {"x": 1}, "idempotency_key": f"{started['id']}:second:0"},
        headers=automations.org.headers,
    )
    assert foreign.status_code == 201, foreign.text
    approved = await automations.client.post(
        f"/api/v1/action-runs/{first['id']}/approve",
        json={"inputs_hash": first["inputs_hash"]},
        headers=automations.org.headers,
    )
    assert approved.status_code == 200, approved.text
    run = await automations.wait(started["id"])
    steps = steps_by_key(run)
    second = steps["second"]
    assert (run["status"], steps["first"]["status"], second["status"], second["error"]["type"]) == (
        "FAILED",
        "COMPLETED",
        "FAILED",
        "IdempotencyConflict",
    )
    assert foreign.json()["id"] in second["error"]["message"]
    assert second["action_run_ids"] == []


class TestWithoutPolling:
    """Poll and sweep intervals far beyond the deadline: only wake-ups can move the run."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        update = {
            "poll_interval_s": 60.0,
            "lease_s": 30.0,
            "worker_concurrency": 4,
            "automation_sweep_interval_s": 3600.0,
        }
        return settings.model_copy(update=update)

    async def test_completions_drive_a_chain_with_no_poll_delay(self, automations: Automations) -> None:
        steps = 8
        await automations.create(
            [{"key": f"s{i}", "action": "echo", "depends_on": [f"s{i - 1}"] if i else []} for i in range(steps)]
        )
        run = await automations.wait((await automations.start())["id"], timeout_s=10.0)
        assert run["status"] == "COMPLETED", run
        assert all(step["status"] == "COMPLETED" for step in run["steps"])
