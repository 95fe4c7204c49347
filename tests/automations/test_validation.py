"""Every create-time check of a spec: the error names the problem and points at the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from virtuousai.actions.registry import default_registry
from virtuousai.automations.graph import build_graph, mermaid
from virtuousai.automations.spec import AutomationSpec
from virtuousai.automations.validation import params_errors, validate_spec


def spec_of(steps: list[dict[str, Any]], **extra: Any) -> AutomationSpec:
    return AutomationSpec.model_validate({"name": "T", "slug": "t", "steps": steps, **extra})


def errors_of(steps: list[dict[str, Any]], **extra: Any) -> list[tuple[list[str | int], str]]:
    return [(e["loc"], e["msg"]) for e in validate_spec(spec_of(steps, **extra), default_registry())]


def test_a_valid_spec_has_no_errors() -> None:
    steps = [
        {"key": "a", "action": "echo", "inputs": {"x": "${{ params.x }}"}},
        {"key": "b", "action": "echo", "for_each": "${{ steps.a.output.items }}", "inputs": {"i": "${{ item }}"}},
        {"key": "c", "action": "sleep", "when": "steps.b.output | length > 0", "inputs": {"seconds": 0}},
        {"key": "d", "action": "echo", "depends_on": ["c"], "trigger": "all_done"},
    ]
    assert errors_of(steps) == []


def test_cycle_is_named() -> None:
    steps = [
        {"key": "a", "action": "echo", "inputs": {"x": "${{ steps.b.output }}"}},
        {"key": "b", "action": "echo", "depends_on": ["a"]},
    ]
    assert errors_of(steps) == [(["body", "steps", 0, "depends_on"], "cycle: a -> b -> a")]


def test_longer_cycle_is_named_in_order() -> None:
    steps = [
        {"key": "start", "action": "echo"},
        {"key": "a", "action": "echo", "depends_on": ["start", "c"]},
        {"key": "b", "action": "echo", "depends_on": ["a"]},
        {"key": "c", "action": "echo", "depends_on": ["b"]},
    ]
    assert errors_of(steps) == [(["body", "steps", 1, "depends_on"], "cycle: a -> c -> b -> a")]


def test_unknown_step_in_depends_on() -> None:
    steps = [{"key": "a", "action": "echo", "depends_on": ["ghost"]}]
    assert errors_of(steps) == [(["body", "steps", 0, "depends_on", 0], "unknown step 'ghost'")]


def test_unknown_step_in_an_expression_points_at_the_field() -> None:
    steps = [
        {"key": "a", "action": "echo"},
        {"key": "b", "action": "echo", "inputs": {"deep": {"list": [1, "${{ steps.ghost.output }}"]}}},
    ]
    assert errors_of(steps) == [
        (["body", "steps", 1, "inputs", "deep", "list", 1], "unknown step 'ghost' in expression")
    ]


def test_self_reference() -> None:
    steps = [{"key": "a", "action": "echo", "when": "${{ steps.a.status == 'COMPLETED' }}"}]
    assert errors_of(steps) == [(["body", "steps", 0, "when"], "a step cannot reference its own output")]


def test_duplicate_step_keys() -> None:
    steps = [{"key": "a", "action": "echo"}, {"key": "a", "action": "echo"}]
    assert errors_of(steps) == [(["body", "steps", 1, "key"], "duplicate step key 'a'")]


def test_unknown_kind() -> None:
    [(loc, msg)] = errors_of([{"key": "a", "action": "teleport"}])
    assert loc == ["body", "steps", 0, "action"]
    assert msg.startswith("unknown action kind 'teleport'")


def test_literal_inputs_are_checked_against_the_kind_schema() -> None:
    steps = [
        {"key": "ok", "action": "echo"},
        {"key": "a", "action": "sleep", "inputs": {"seconds": "soon"}},
        {"key": "b", "action": "sleep", "inputs": {}},
        {"key": "c", "action": "sleep", "inputs": {"seconds": 1, "extra": True}},
        {"key": "d", "action": "sleep", "inputs": {"seconds": -1}},
    ]
    found = errors_of(steps)
    assert [loc for loc, _ in found] == [
        ["body", "steps", 1, "inputs", "seconds"],
        ["body", "steps", 2, "inputs", "seconds"],
        ["body", "steps", 3, "inputs", "extra"],
        ["body", "steps", 4, "inputs", "seconds"],
    ]
    assert "valid number" in found[0][1]
    assert found[1][1] == "Field required"


def test_inputs_holding_expressions_are_left_for_run_time() -> None:
    steps = [
        {"key": "a", "action": "echo"},
        {"key": "b", "action": "sleep", "inputs": {"seconds": "${{ steps.a.output.n }}"}},
        {"key": "c", "action": "fail", "inputs": {"message": "${{ params.m }}", "succeed_on_attempt": "two"}},
    ]
    assert [loc for loc, _ in errors_of(steps)] == [["body", "steps", 2, "inputs", "succeed_on_attempt"]]


def test_expression_syntax_error_points_at_the_field() -> None:
    steps = [
        {"key": "a", "action": "echo"},
        {"key": "b", "action": "echo"},
        {"key": "c", "action": "echo", "inputs": {"sql": "select ${{ steps.a.output. }}"}},
    ]
    [(loc, msg)] = errors_of(steps)
    assert loc == ["body", "steps", 2, "inputs", "sql"]
    assert msg.startswith("expression syntax error: expected a key after '.'")
    assert "(at position 27)" in msg


def test_bad_when_and_for_each() -> None:
    steps = [
        {"key": "a", "action": "echo", "when": "params.x >"},
        {"key": "b", "action": "echo", "for_each": "${{ [1, 2 }}"},
    ]
    assert [loc for loc, _ in errors_of(steps)] == [["body", "steps", 0, "when"], ["body", "steps", 1, "for_each"]]


@pytest.mark.parametrize(
    "text", ["${{ params.__class__ }}", "${{ params['__globals__'] }}", "${{ __import__ }}", "a ${{ item.__dict__ }}"]
)
def test_python_internals_are_refused_when_the_spec_is_parsed(text: str) -> None:
    steps = [{"key": "a", "action": "echo", "for_each": [1], "inputs": {"x": text}}]
    [(loc, msg)] = errors_of(steps)
    assert loc == ["body", "steps", 0, "inputs", "x"]
    assert msg.startswith("expression syntax error: ") and "names Python's internals, not data" in msg


@pytest.mark.parametrize(
    ("for_each", "always"),
    [("${{ 5 }}", "int"), ("${{ 'abc' }}", "str"), ("${{ null }}", "null"), ("${{ true }}", "bool")],
)
def test_a_for_each_literal_that_is_not_a_list_is_refused(for_each: str, always: str) -> None:
    [(loc, msg)] = errors_of([{"key": "a", "action": "echo", "for_each": for_each}])
    assert (loc, msg) == (
        ["body", "steps", 0, "for_each"],
        f"`for_each` must give a list; this expression is always {always}",
    )


def test_a_for_each_with_text_around_its_expression_is_refused() -> None:
    steps = [{"key": "a", "action": "echo"}, {"key": "b", "action": "echo", "for_each": "x ${{ steps.a.output }}"}]
    [(loc, msg)] = errors_of(steps)
    assert loc == ["body", "steps", 1, "for_each"] and "no text around it" in msg
    # A list literal, or an expression whose value only the run knows, is for the run to judge.
    assert errors_of([{"key": "a", "action": "echo", "for_each": "${{ [1, 2] }}"}]) == []


def test_item_outside_for_each() -> None:
    steps = [
        {"key": "a", "action": "echo", "inputs": {"x": "${{ item }}"}},
        {"key": "b", "action": "echo", "for_each": [1], "when": "${{ index > 0 }}"},
        {"key": "c", "action": "echo", "inputs": {"x": "${{ secrets.key }}"}},
    ]
    assert [(loc, msg.split(";")[0]) for loc, msg in errors_of(steps)] == [
        (["body", "steps", 0, "inputs", "x"], "`item` is only defined in the inputs of a step with `for_each`"),
        (["body", "steps", 1, "when"], "`index` is only defined in the inputs of a step with `for_each`"),
        (["body", "steps", 2, "inputs", "x"], "unknown name 'secrets'"),
    ]


def test_bad_cron_expression_and_timezone() -> None:
    triggers = [
        {"type": "manual"},
        {"type": "cron", "expression": "61 * * * *", "timezone": "Mars/Olympus"},
        {"type": "cron", "expression": "* * * * * *"},
        {"type": "cron", "expression": "@daily", "timezone": "Europe/Paris"},
    ]
    assert [loc for loc, _ in errors_of([{"key": "a", "action": "echo"}], triggers=triggers)] == [
        ["body", "triggers", 1, "expression"],
        ["body", "triggers", 1, "timezone"],
        ["body", "triggers", 2, "expression"],
    ]


def test_parameters_schema_and_cron_params() -> None:
    parameters = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    triggers = [{"type": "cron", "expression": "0 * * * *", "params": {"n": "x"}}]
    assert errors_of([{"key": "a", "action": "echo"}], parameters=parameters, triggers=triggers) == [
        (["body", "triggers", 0, "params", "n"], '"x" is not of type "integer"')
    ]
    [(loc, msg)] = errors_of([{"key": "a", "action": "echo"}], parameters={"type": "banana"})
    assert loc == ["body", "parameters"]
    assert msg.startswith("not a valid JSON schema")


def test_remote_refs_in_parameters_are_never_fetched() -> None:
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}
    [error] = params_errors(schema, {}, ("body", "params"))
    assert "cannot be used" in error["msg"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"key": "a"}, "exactly one of `action` or `template`"),
        ({"key": "a", "action": "echo", "template": "slug:t"}, "exactly one of `action` or `template`"),
        ({"key": "a-b", "action": "echo"}, "String should match pattern"),
        ({"key": "a", "action": "echo", "max_parallel": 2}, "only applies with `for_each`"),
        ({"key": "a", "action": "echo", "for_each": "not an expression"}, "must be a list or"),
        ({"key": "a", "action": "echo", "on_failure": "explode"}, "Input should be 'fail_run' or 'continue'"),
        ({"key": "a", "action": "echo", "surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_shape_errors_come_from_the_model(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec_of([step])


def test_graph_order_and_mermaid() -> None:
    spec = spec_of(
        [
            {
                "key": "join",
                "action": "echo",
                "inputs": {"l": "${{ steps.left.output }}", "r": "${{ steps.right.output }}"},
            },
            {"key": "left", "action": "echo", "depends_on": ["root"]},
            {"key": "right", "action": "echo", "when": "${{ steps.root.output.go }}"},
            {"key": "root", "action": "echo"},
            {"key": "end", "action": "echo", "for_each": [1, 2], "depends_on": ["join"], "trigger": "all_done"},
        ]
    )
    graph = build_graph(spec)
    assert graph.order == ("root", "left", "right", "join", "end")
    assert graph.dependencies["join"] == ("left", "right")
    assert graph.dependents("root") == ["left", "right"]
    assert mermaid(spec) == (
        "flowchart TD\n"
        '    root["root<br/>echo"]\n'
        '    left["left<br/>echo"]\n'
        '    right{{"right<br/>echo"}}\n'
        '    join["join<br/>echo"]\n'
        '    step_end[["end<br/>echo<br/>for each"]]\n'
        "    root --> left\n"
        "    root --> right\n"
        "    left --> join\n"
        "    right --> join\n"
        "    join -.-> step_end\n"
    )
