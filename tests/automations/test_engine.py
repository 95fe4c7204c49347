"""The engine end to end, with in-process workers: DAGs, fan-out, conditions, failure policies, retry, cancel."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from tests.automation_fixtures import Automations, steps_by_key
from tests.conftest import OrgHandle
from virtuousai.actions.registry import default_registry
from virtuousai.process import build_orchestrator
from virtuousai.runtime.context import ActionContext
from virtuousai.runtime.kinds import RetryPolicy, action_kind
from virtuousai.store.engine import make_engine, make_sessionmaker

# A kind of this test module: fails while its switch is on, so a retry can succeed once the test flips it.
FLAKY = {"failing": True}


class FlakyInput(BaseModel):
    model_config = ConfigDict(extra="allow")


class FlakyOutput(BaseModel):
    model_config = ConfigDict(extra="allow")


@action_kind("test_flaky", risk="read", description="Fails while FLAKY['failing'].", retry=RetryPolicy(max_attempts=1))
async def flaky(ctx: ActionContext, inputs: FlakyInput) -> FlakyOutput:
    if FLAKY["failing"]:
        raise RuntimeError("flaky is failing")
    return FlakyOutput.model_validate(inputs.model_dump())


async def test_diamond(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "a", "action": "echo", "inputs": {"n": "${{ params.n }}"}},
            {"key": "b", "action": "echo", "inputs": {"double": "${{ steps.a.output.n * 2 }}"}},
            {"key": "c", "action": "echo", "inputs": {"label": "n=${{ steps.a.output.n }}"}},
            {
                "key": "d",
                "action": "echo",
                "inputs": {"b": "${{ steps.b.output.double }}", "c": "${{ steps.c.output }}"},
            },
        ],
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    started = await automations.start(params={"n": 21})
    assert started["trigger"] == "manual" and started["version"] == 1
    run = await automations.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    steps = steps_by_key(run)
    assert [s["key"] for s in run["steps"]] == ["a", "b", "c", "d"]
    assert steps["d"]["output"] == {"b": 42, "c": {"label": "n=21"}}
    assert all(len(s["action_run_ids"]) == 1 and s["attempts"] == 1 for s in run["steps"])
    d_started = _at(steps["d"]["started_at"])
    assert d_started >= max(_at(steps["b"]["finished_at"]), _at(steps["c"]["finished_at"]))
    action_run = await automations.action_run(steps["d"]["action_run_ids"][0])
    assert (action_run["origin"], action_run["automation_run_id"], action_run["step_key"]) == (
        "automation",
        run["id"],
        "d",
    )


async def test_fan_out_and_in_with_max_parallel(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "list", "action": "echo", "inputs": {"delays": [0.15, 0.05, 0.1, 0.05, 0.1, 0.05]}},
            {
                "key": "fan",
                "action": "sleep",
                "for_each": "${{ steps.list.output.delays }}",
                "max_parallel": 2,
                "inputs": {"seconds": "${{ item }}"},
            },
            {"key": "join", "action": "echo", "inputs": {"n": "${{ steps.fan.output | length }}"}},
        ]
    )
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "COMPLETED", run
    fan = steps_by_key(run)["fan"]
    assert fan["item_count"] == 6
    assert fan["output"] == [{"slept_s": d} for d in (0.15, 0.05, 0.1, 0.05, 0.1, 0.05)]  # item order
    assert steps_by_key(run)["join"]["output"] == {"n": 6}
    action_runs = [await automations.action_run(i) for i in fan["action_run_ids"]]
    assert [ar["inputs"]["seconds"] for ar in action_runs] == [0.15, 0.05, 0.1, 0.05, 0.1, 0.05]
    intervals = [(_at(ar["started_at"]), _at(ar["finished_at"])) for ar in action_runs]
    most_at_once = max(sum(s <= start < f for s, f in intervals) for start, _ in intervals)
    assert most_at_once == 2


async def test_empty_fan_out_completes_with_an_empty_list(automations: Automations) -> None:
    await automations.create([{"key": "fan", "action": "echo", "for_each": [], "inputs": {"i": "${{ item }}"}}])
    run = await automations.wait((await automations.start())["id"])
    assert (run["status"], run["steps"][0]["output"]) == ("COMPLETED", [])


async def test_conditional_branch_is_skipped(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "check", "action": "echo", "inputs": {"go": "${{ params.go }}"}},
            {"key": "yes", "action": "echo", "when": "${{ steps.check.output.go }}"},
            {"key": "no", "action": "echo", "when": "not steps.check.output.go"},
            {"key": "after_yes", "action": "echo", "depends_on": ["yes"]},
            {"key": "always", "action": "echo", "depends_on": ["yes", "no"], "trigger": "all_done"},
        ]
    )
    run = await automations.wait((await automations.start(params={"go": False}))["id"])
    assert run["status"] == "COMPLETED"
    status = {key: (s["status"], s["reason"]) for key, s in steps_by_key(run).items()}
    assert status == {
        "check": ("COMPLETED", None),
        "yes": ("SKIPPED", "`when` is false"),
        "no": ("COMPLETED", None),
        "after_yes": ("SKIPPED", "dependency 'yes' is SKIPPED"),
        "always": ("COMPLETED", None),
    }
    assert steps_by_key(run)["yes"]["action_run_ids"] == []


async def test_fail_run_policy_fails_the_run_and_cancels_the_rest(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "slow", "action": "sleep", "inputs": {"seconds": 30}},
            {"key": "boom", "action": "fail", "inputs": {"message": "no luck"}},
            {"key": "after", "action": "echo", "depends_on": ["boom"]},
        ]
    )
    started = await automations.start()
    run = await automations.wait(started["id"])
    assert run["status"] == "FAILED"
    assert run["error"]["step"] == "boom" and "no luck" in run["error"]["message"]
    steps = steps_by_key(run)
    assert steps["boom"]["status"] == "FAILED" and steps["boom"]["error"]["message"] == "no luck"
    assert (steps["slow"]["status"], steps["after"]["status"]) == ("CANCELLED", "CANCELLED")
    slow_run = steps["slow"]["action_run_ids"][0]
    await automations.wait_action_run(slow_run, "CANCELLED")


async def test_continue_policy_goes_on(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "boom", "action": "fail", "on_failure": "continue"},
            {"key": "sibling", "action": "echo"},
            {"key": "needs_boom", "action": "echo", "depends_on": ["boom"]},
            {
                "key": "cleanup",
                "action": "echo",
                "depends_on": ["boom"],
                "trigger": "all_done",
                "inputs": {"status": "${{ steps.boom.status }}"},
            },
        ]
    )
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "COMPLETED"
    steps = steps_by_key(run)
    assert [steps[k]["status"] for k in ("boom", "sibling", "needs_boom", "cleanup")] == [
        "FAILED",
        "COMPLETED",
        "SKIPPED",
        "COMPLETED",
    ]
    assert steps["cleanup"]["output"] == {"status": "FAILED"}


async def test_retry_reuses_completed_outputs(automations: Automations) -> None:
    FLAKY["failing"] = True
    await automations.create(
        [
            {"key": "first", "action": "echo", "inputs": {"v": 1}},
            {"key": "flaky", "action": "test_flaky", "inputs": {"v": "${{ steps.first.output.v }}"}},
            {"key": "last", "action": "echo", "inputs": {"v": "${{ steps.flaky.output.v }}"}},
            {"key": "side", "action": "echo", "inputs": {"v": 2}},
        ]
    )
    failed = await automations.wait((await automations.start())["id"])
    assert failed["status"] == "FAILED"
    assert steps_by_key(failed)["last"]["status"] == "CANCELLED"

    FLAKY["failing"] = False
    response = await automations.client.post(
        f"/api/v1/automation-runs/{failed['id']}/retry", headers=automations.org.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["retry_of"] == failed["id"]
    retried = await automations.wait(response.json()["id"])
    assert retried["status"] == "COMPLETED"
    steps, before = steps_by_key(retried), steps_by_key(failed)
    assert steps["first"]["reused_from"] == failed["id"]
    assert steps["first"]["action_run_ids"] == [] and steps["first"]["output"] == before["first"]["output"]
    assert steps["last"]["output"] == {"v": 1}
    assert len(steps["flaky"]["action_run_ids"]) == 1
    again = await automations.client.post(
        f"/api/v1/automation-runs/{retried['id']}/retry", headers=automations.org.headers
    )
    assert again.status_code == 409  # every step completed


async def test_cancel_cascades_to_running_steps(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "long", "action": "sleep", "inputs": {"seconds": 30}},
            {"key": "next", "action": "echo", "depends_on": ["long"]},
        ]
    )
    started = await automations.start()
    running = await automations.wait(started["id"], until=lambda r: steps_by_key(r)["long"]["status"] == "RUNNING")
    long_run = steps_by_key(running)["long"]["action_run_ids"][0]
    await automations.wait_action_run(long_run, "RUNNING")
    response = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert response.status_code == 200
    run = response.json()
    assert run["status"] == "CANCELLED"
    assert {s["key"]: s["status"] for s in run["steps"]} == {"long": "CANCELLED", "next": "CANCELLED"}
    await automations.wait_action_run(long_run, "CANCELLED")
    again = await automations.client.post(
        f"/api/v1/automation-runs/{started['id']}/cancel", headers=automations.org.headers
    )
    assert again.status_code == 200  # cancelling twice is harmless


async def test_bad_params_are_a_422_and_start_nothing(automations: Automations) -> None:
    await automations.create(
        [{"key": "a", "action": "echo"}],
        parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    response = await automations.client.post(
        "/api/v1/automations/slug:flow/runs", json={"params": {"n": "x"}}, headers=automations.org.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "params", "n"]
    listed = await automations.client.get("/api/v1/automation-runs", headers=automations.org.headers)
    assert listed.json()["items"] == []


async def test_runtime_expression_errors_fail_the_step(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "a", "action": "echo", "inputs": {"x": 1}},
            {"key": "b", "action": "sleep", "inputs": {"seconds": "${{ steps.a.output.missing }}"}},
        ]
    )
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "FAILED"
    assert steps_by_key(run)["b"]["error"]["type"] == "ExpressionError"
    assert "no key 'missing'" in steps_by_key(run)["b"]["error"]["message"]


async def test_events_stream_and_list(automations: Automations, client: httpx.AsyncClient, org: OrgHandle) -> None:
    await automations.create([{"key": "a", "action": "echo"}, {"key": "b", "action": "echo", "depends_on": ["a"]}])
    run = await automations.wait((await automations.start())["id"])
    async with client.stream("GET", f"/api/v1/automation-runs/{run['id']}/events", headers=org.headers) as stream:
        lines = [line async for line in stream.aiter_lines()]
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    transitions = [(e["kind"], e["data"].get("step"), e["data"]["to"]) for e in events]
    assert transitions[0] == ("run", None, "PENDING")
    assert transitions[-1] == ("run", None, "COMPLETED")
    assert ("step", "b", "COMPLETED") in transitions
    listed = (await client.get("/api/v1/automation-runs?automation=slug:flow", headers=org.headers)).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]


async def test_listed_runs_count_their_steps_by_status(automations: Automations) -> None:
    await automations.create(
        [
            {"key": "a", "action": "echo"},
            {"key": "b", "action": "echo", "depends_on": ["a"]},
            {"key": "c", "action": "echo", "when": "false"},
        ]
    )
    run = await automations.wait((await automations.start())["id"])
    listed = await automations.client.get("/api/v1/automation-runs", headers=automations.org.headers)
    [item] = listed.json()["items"]
    assert item["steps"] is None  # the steps themselves are on GET of one run
    assert item["step_counts"] == {"COMPLETED": 2, "SKIPPED": 1} == run["step_counts"]


async def test_two_orchestrators_advancing_at_once_create_each_step_once(
    automations: Automations, app: FastAPI, settings: Any
) -> None:
    await automations.create(
        [{"key": "fan", "action": "sleep", "for_each": [0.01] * 8, "inputs": {"seconds": "${{ item }}"}}]
    )
    run = await automations.start()
    others = [make_engine(settings.resolved_database_url) for _ in range(2)]
    try:
        # Two processes' orchestrators advancing the same run at the same moments.
        orchestrators = [build_orchestrator(make_sessionmaker(e), default_registry(), settings) for e in others]
        for _ in range(3):
            await asyncio.gather(*(o.advance(automations.org.org_id, run["id"]) for o in orchestrators))
    finally:
        for e in others:
            await e.dispose()
    finished = await automations.wait(run["id"])
    assert finished["status"] == "COMPLETED"
    assert len(steps_by_key(finished)["fan"]["action_run_ids"]) == 8


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)
