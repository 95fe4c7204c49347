"""Templates in automations: template steps (kind=action, instantiated by the engine with a snapshot on each
ActionRun, versions pinned when the run starts) and templates of kind=automation (instantiate → a run)."""

from __future__ import annotations

from typing import Any

from tests.automation_fixtures import Automations, steps_by_key
from tests.runtime.kinds_for_tests import Gate

TEMPLATES = "/api/v1/templates"
TABLE_PARAMS = {
    "type": "object",
    "properties": {
        "table": {"type": "string", "minLength": 1},
        "limit": {"type": "integer", "minimum": 1, "default": 10},
    },
    "required": ["table"],
}
ECHO_TABLE = {"kind": "echo", "inputs": {"table": "${{ params.table | upper }}", "limit": "${{ params.limit }}"}}


async def _template(automations: Automations, **body: Any) -> dict[str, Any]:
    payload = {"kind": "action", "name": "Echo a table", "slug": "echo-table", "parameters": TABLE_PARAMS}
    payload |= {"body": ECHO_TABLE} | body
    response = await automations.client.post(TEMPLATES, json=payload, headers=automations.org.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _patch_template(automations: Automations, slug: str, **changes: Any) -> dict[str, Any]:
    response = await automations.client.patch(f"{TEMPLATES}/slug:{slug}", json=changes, headers=automations.org.headers)
    assert response.status_code == 200, response.text
    patched: dict[str, Any] = response.json()
    return patched


# -- template steps ----------------------------------------------------------------------------------------------


async def test_template_steps_run_with_a_snapshot_on_each_action_run(automations: Automations) -> None:
    template = await _template(automations)
    await automations.create(
        [
            {"key": "tables", "action": "echo", "inputs": {"names": ["orders", "users"]}},
            {"key": "one", "template": "slug:echo-table", "inputs": {"table": "${{ params.t }}", "limit": 3}},
            {
                "key": "each",
                "template": template["id"],
                "for_each": "${{ steps.tables.output.names }}",
                "inputs": {"table": "${{ item }}"},
            },
        ],
        parameters={"type": "object", "properties": {"t": {"type": "string"}}},
    )
    run = await automations.wait((await automations.start(params={"t": "events"}))["id"])
    assert run["status"] == "COMPLETED", run
    assert run["template_pins"] == {
        "slug:echo-table": {"template_id": template["id"], "version": 1},
        template["id"]: {"template_id": template["id"], "version": 1},
    }
    steps = steps_by_key(run)
    assert steps["one"]["output"] == {"table": "EVENTS", "limit": 3}
    assert steps["each"]["output"] == [{"table": "ORDERS", "limit": 10}, {"table": "USERS", "limit": 10}]
    action_run = await automations.action_run(steps["each"]["action_run_ids"][1])
    assert (action_run["kind"], action_run["origin"], action_run["step_key"]) == ("echo", "automation", "each")
    snapshot = action_run["template_snapshot"]
    assert (snapshot["template_id"], snapshot["version"], snapshot["kind"]) == (template["id"], 1, "action")
    assert snapshot["version_hash"] == template["content_hash"]
    assert snapshot["params"] == {"table": "users", "limit": 10}  # rendered step inputs, template defaults added
    assert snapshot["body"] == ECHO_TABLE and snapshot["rendered"]["inputs"] == {"table": "USERS", "limit": 10}

    # A new template version is used by the next run; the first run's snapshots stay as they were.
    await _patch_template(automations, "echo-table", body={"kind": "echo", "inputs": {"t": "${{ params.table }}"}})
    second = await automations.wait((await automations.start(params={"t": "events"}))["id"])
    assert steps_by_key(second)["one"]["output"] == {"t": "events"}
    assert second["template_pins"]["slug:echo-table"]["version"] == 2
    assert (await automations.action_run(steps["each"]["action_run_ids"][1]))["template_snapshot"] == snapshot


async def test_a_run_keeps_the_template_version_it_started_with(automations: Automations, gate: Gate) -> None:
    await _template(automations)
    await automations.create(
        [
            {"key": "hold", "action": "test_gate", "inputs": {"gate": "g"}},
            {"key": "use", "template": "slug:echo-table", "depends_on": ["hold"], "inputs": {"table": "t"}},
        ]
    )
    started = await automations.start()
    await _patch_template(automations, "echo-table", body={"kind": "echo", "inputs": {"v2": "${{ params.table }}"}})
    gate.open()
    run = await automations.wait(started["id"])
    assert run["status"] == "COMPLETED", run
    assert steps_by_key(run)["use"]["output"] == {"table": "T", "limit": 10}  # version 1, current at the start
    action_run = await automations.action_run(steps_by_key(run)["use"]["action_run_ids"][0])
    assert action_run["template_snapshot"]["version"] == 1


async def test_template_steps_are_checked_at_create_time(automations: Automations) -> None:
    await _template(automations)
    await _template(automations, kind="automation", slug="whole-flow", body={"name": "x", "slug": "x", "steps": []})
    steps = [
        {"key": "missing", "template": "slug:nowhere"},
        {"key": "wrong_kind", "template": "slug:whole-flow"},
        {"key": "bad_type", "template": "slug:echo-table", "inputs": {"table": 5}},
        {"key": "no_table", "template": "slug:echo-table", "inputs": {"limit": "${{ params.n }}"}},
        {"key": "too_small", "template": "slug:echo-table", "inputs": {"table": "t", "limit": 0}},
        {"key": "runtime_values", "template": "slug:echo-table",
         "inputs": {"table": "${{ params.n }}", "limit": "x${{ 1 }}"}},
        {"key": "connection", "template": "slug:echo-table", "connection": "slug:c", "inputs": {"table": "t"}},
    ]  # fmt: skip
    spec = {"name": "f", "slug": "flow", "steps": steps}
    response = await automations.client.post("/api/v1/automations", json=spec, headers=automations.org.headers)
    assert response.status_code == 422, response.text
    assert [(e["loc"], e["type"]) for e in response.json()["errors"]] == [
        (["body", "steps", 0, "template"], "unknown_template"),
        (["body", "steps", 1, "template"], "template_kind"),
        (["body", "steps", 2, "inputs", "table"], "params"),
        (["body", "steps", 3, "inputs"], "params"),  # `table` is required; an expression elsewhere does not hide it
        (["body", "steps", 4, "inputs", "limit"], "params"),
        (["body", "steps", 6, "connection"], "unknown_connection"),
    ]
    assert "of kind 'automation'" in response.json()["errors"][1]["msg"]
    listed = await automations.client.get("/api/v1/automations", headers=automations.org.headers)
    assert listed.json()["items"] == []


async def test_params_that_only_fail_at_run_time_fail_the_step(automations: Automations) -> None:
    await _template(automations)
    await automations.create([{"key": "use", "template": "slug:echo-table", "inputs": {"table": "${{ params.t }}"}}])
    run = await automations.wait((await automations.start(params={"t": ""}))["id"])
    assert run["status"] == "FAILED"
    error = steps_by_key(run)["use"]["error"]
    assert error["type"] == "InvalidInputs"
    assert error["errors"][0]["loc"] == ["steps", "use", "inputs", "table"]


async def test_a_template_deleted_before_the_run_fails_its_step(automations: Automations) -> None:
    await _template(automations)
    await automations.create([{"key": "use", "template": "slug:echo-table", "inputs": {"table": "t"}}])
    deleted = await automations.client.delete(f"{TEMPLATES}/slug:echo-table", headers=automations.org.headers)
    assert deleted.status_code == 204
    run = await automations.wait((await automations.start())["id"])
    assert run["status"] == "FAILED"
    assert steps_by_key(run)["use"]["error"]["type"] == "TemplateNotFound"


# -- templates of kind automation ----------------------------------------------------------------------------------

SHOP_PARAMS = {
    "type": "object",
    "properties": {"shop": {"type": "string", "pattern": "^[a-z]+$"}, "n": {"type": "integer", "default": 2}},
    "required": ["shop"],
}
SHOP_FLOW = {
    "name": "Sync ${{ params.shop }}",
    "slug": "sync-${{ params.shop }}",
    "steps": [
        {"key": "a", "action": "echo", "inputs": {"shop": "${{ params.shop }}"}},
        # Mixed expressions stay for the engine, which runs with the same params.
        {"key": "b", "action": "echo", "inputs": {"n": "${{ params.n }}", "from_a": "${{ steps.a.output.shop }}",
                                                   "twice": "${{ params.n * 2 + (steps.a.output.shop | length) }}"}},
    ],
}  # fmt: skip


async def _instantiate(automations: Automations, params: dict[str, Any], **extra: Any) -> Any:
    return await automations.client.post(
        f"{TEMPLATES}/slug:shop-sync/instantiate", json={"params": params, **extra}, headers=automations.org.headers
    )


async def test_an_automation_template_starts_a_run_that_keeps_its_snapshot(automations: Automations) -> None:
    template = await _template(automations, kind="automation", slug="shop-sync", parameters=SHOP_PARAMS, body=SHOP_FLOW)
    response = await _instantiate(automations, {"shop": "acme"})
    assert response.status_code == 201, response.text
    first = response.json()
    assert (first["automation"]["slug"], first["automation"]["name"]) == ("sync-acme", "Sync acme")
    assert (first["automation_outcome"], first["automation"]["version"]) == ("created", 1)
    assert first["automation"]["spec"]["parameters"] == SHOP_PARAMS  # the body had none: the template's
    assert first["automation"]["spec"]["steps"][0]["inputs"] == {"shop": "acme"}
    run = await automations.wait(first["automation_run"]["id"])
    assert (run["status"], run["trigger"], run["params"]) == ("COMPLETED", "template", {"shop": "acme", "n": 2})
    assert steps_by_key(run)["b"]["output"] == {"n": 2, "from_a": "acme", "twice": 8}
    snapshot = run["template_snapshot"]
    assert snapshot == first["snapshot"]
    assert (snapshot["template_id"], snapshot["kind"], snapshot["version"]) == (template["id"], "automation", 1)
    assert snapshot["body"] == SHOP_FLOW

    again = (await _instantiate(automations, {"shop": "acme"})).json()
    assert (again["automation_outcome"], again["automation"]["id"]) == ("unchanged", first["automation"]["id"])

    changed = {**SHOP_FLOW, "steps": [{"key": "a", "action": "echo", "inputs": {"v2": "${{ params.shop }}"}}]}
    await _patch_template(automations, "shop-sync", body=changed)
    updated = (await _instantiate(automations, {"shop": "acme"})).json()
    assert (updated["automation_outcome"], updated["automation"]["version"]) == ("updated", 2)
    assert updated["automation_run"]["template_snapshot"]["version"] == 2
    assert (await automations.wait(updated["automation_run"]["id"]))["status"] == "COMPLETED"
    # The first run still shows what it was made from, also once the template is gone.
    assert (await automations.get(run["id"]))["template_snapshot"] == snapshot
    deleted = await automations.client.delete(f"{TEMPLATES}/slug:shop-sync", headers=automations.org.headers)
    assert deleted.status_code == 204
    assert (await automations.get(run["id"]))["template_snapshot"] == snapshot


async def test_automation_template_errors(automations: Automations) -> None:
    await _template(automations, kind="automation", slug="shop-sync", parameters=SHOP_PARAMS, body=SHOP_FLOW)
    await automations.create([{"key": "mine", "action": "echo"}], slug="sync-globex")

    taken = await _instantiate(automations, {"shop": "globex"})
    assert taken.status_code == 409, taken.text
    assert taken.json()["errors"][0]["loc"] == ["template", "rendered", "slug"]
    hand_made = await automations.client.get("/api/v1/automations/slug:sync-globex", headers=automations.org.headers)
    assert hand_made.json()["version"] == 1

    bad_params = await _instantiate(automations, {"shop": "Not Lower"})
    assert (bad_params.status_code, bad_params.json()["errors"][0]["loc"]) == (422, ["body", "params", "shop"])
    keyed = await _instantiate(automations, {"shop": "acme"}, idempotency_key="k")
    assert (keyed.status_code, keyed.json()["errors"][0]["loc"]) == (422, ["body", "idempotency_key"])

    not_a_flow = {"name": "x", "slug": "x-${{ params.shop }}", "steps": [{"key": "a", "action": "no_such_kind"}]}
    await _patch_template(automations, "shop-sync", body=not_a_flow)
    invalid = await _instantiate(automations, {"shop": "acme"})
    assert invalid.status_code == 422
    assert [e["loc"] for e in invalid.json()["errors"]] == [["template", "rendered", "steps", 0, "action"]]
    listed = await automations.client.get("/api/v1/automations", headers=automations.org.headers)
    assert [a["slug"] for a in listed.json()["items"]] == ["sync-globex"]
    runs = await automations.client.get("/api/v1/automation-runs", headers=automations.org.headers)
    assert runs.json()["items"] == []
