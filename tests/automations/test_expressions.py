"""The ``${{ }}`` expression language: values, operators, filters, errors, and properties over random input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virtuousai.expressions.evaluation import (
    ExpressionError,
    evaluate_condition,
    evaluate_template,
    parse_template,
    references,
    render_value,
)

SCOPE: dict[str, Any] = {
    "params": {"day": "2026-01-02", "limit": 3, "tags": ["a", "b"], "flag": False, "none": None},
    "steps": {
        "extract": {"status": "COMPLETED", "output": {"rows": [{"id": 7, "name": "x"}, {"id": 9}], "count": 2}},
    },
    "item": {"shop": "s1"},
    "index": 4,
    "run": {"id": "arun_1", "started_at": "2026-01-02T03:04:05+00:00"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${{ params.tags }}", ["a", "b"]),  # a whole expression keeps its type
        ("  ${{ params.limit }}  ", 3),
        ("day=${{ params.day }}, n=${{ params.limit }}", "day=2026-01-02, n=3"),  # embedded: text
        ("${{ steps.extract.output.rows[1].id }}", 9),
        ("${{ steps.extract.output.rows.0.name }}", "x"),
        ("${{ steps['extract'].output.count }}", 2),
        ("${{ steps.extract.output.rows[-1] }}", {"id": 9}),
        ("${{ item.shop }}-${{ index }}", "s1-4"),
        ("${{ run.id }}", "arun_1"),
        ("${{ params.limit >= 3 and not params.flag }}", True),
        ("${{ params.limit < 3 or params.day == '2026-01-02' }}", True),
        ("${{ 'a' in params.tags }}", True),
        ("${{ 'z' not in params.tags }}", True),
        ("${{ 'day' in params }}", True),
        ("${{ steps.extract.output.rows | length }}", 2),
        ("${{ params.tags | length > 1 }}", True),
        ("${{ params.missing | default('fallback') }}", "fallback"),
        ("${{ params.none | default(5) }}", 5),
        ("${{ params.limit | default(5) }}", 3),
        ("${{ params.tags | json }}", '["a","b"]'),
        ("${{ params.tags | join(' + ') | upper }}", "A + B"),
        ("${{ 'MiXed' | lower }}", "mixed"),
        ("${{ [1, 'two', null, true, [2.5]] }}", [1, "two", None, True, [2.5]]),
        ("${{ (params.limit + 1) * 2 - 10 / 4 }}", 5.5),
        ("${{ index % 3 }}", 1),
        ("${{ 'a' + \"b\\n\" }}", "a" + "b\n"),
        ("${{ true == 1 }}", False),  # JSON equality: a boolean is not a number
        ("tags: ${{ params.tags }}", 'tags: ["a","b"]'),
        ("null: [${{ params.none }}]", "null: []"),
        ("no expression here", "no expression here"),
    ],
)
def test_evaluates_templates(template: str, expected: Any) -> None:
    assert evaluate_template(template, SCOPE) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("${{ params.limit > 2 }}", True),
        ("params.limit > 5", False),  # bare expressions are accepted for `when`
        ("steps.extract.status == 'COMPLETED'", True),
        ("params.tags", True),  # truthiness: a non-empty list
        ("params.none", False),
        (False, False),
    ],
)
def test_evaluates_conditions(condition: str | bool, expected: bool) -> None:
    assert evaluate_condition(condition, SCOPE) is expected


def test_renders_nested_inputs() -> None:
    rendered = render_value({"q": ["${{ params.limit }}", {"d": "on ${{ params.day }}"}], "n": 1}, SCOPE)
    assert rendered == {"q": [3, {"d": "on 2026-01-02"}], "n": 1}


@pytest.mark.parametrize(
    ("template", "message", "position"),
    [
        ("${{ params.limit +  }}", "expected a value", 20),
        ("x ${{ params.limit", "missing '}}'", 2),
        ("${{ }}", "empty expression", 4),
        ("${{ 1 < 2 < 3 }}", "cannot be chained", 10),
        ("${{ params | nope }}", "unknown filter", 13),
        ("${{ params.a ! 1 }}", "unexpected character '!'", 13),
        ("${{ 'unterminated }}", "unexpected character", 4),
        ("${{ (1 }}", "expected ')'", 7),
        ("${{ [1 2] }}", "expected ',' or ']'", 7),
        ("${{ 'a\\q' }}", "unknown escape", 6),
    ],
)
def test_syntax_errors_carry_their_position(template: str, message: str, position: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template(template)
    assert message in caught.value.message
    assert caught.value.position == position


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${{ params.nope }}", "no key 'nope'"),
        ("${{ params.tags[5] }}", "out of range"),
        ("${{ unknown }}", "unknown name"),
        ("${{ params.limit < 'a' }}", "cannot compare"),
        ("${{ params.limit / 0 }}", "division by zero"),
        ("${{ params.limit | length }}", "has no length"),
        ("${{ -params.day }}", "cannot negate"),
        ("${{ params.tags.x }}", "cannot look up"),
    ],
)
def test_evaluation_errors_are_expression_errors(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate_template(template, SCOPE)


@pytest.mark.parametrize(
    "template",
    [
        "${{ params.__class__ }}",
        "${{ params['__class__'] }}",
        "${{ ''.__class__ }}",
        "${{ params.tags.__len__ }}",
        "${{ run.id.upper }}",
        "${{ __import__ }}",
    ],
)
def test_python_internals_are_unreachable(template: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate_template(template, SCOPE)


def test_references_names_the_steps_used() -> None:
    text = "${{ steps.a.output.x }} and ${{ steps['b'].status }} ${{ params.steps }} ${{ item.steps }}"
    assert references(text) == {"a", "b"}
    assert references("no expressions") == set()


def test_nesting_is_bounded() -> None:
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_template("${{ " + "(" * 500 + "1" + ")" * 500 + " }}")
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_template("${{ " + " + ".join(["1"] * 400) + " }}")


# -- properties -----------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text(max_size=20)
)
literals = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4), max_leaves=12)


def to_source(value: Any) -> str:
    """An expression whose value is ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value >= 0 else f"-{abs(value)!r}"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        escaped = escaped.replace("\t", "\\t").replace("\r", "\\r")
        return f"'{escaped}'"
    return "[" + ", ".join(to_source(item) for item in value) + "]"


@given(literals)
@settings(max_examples=300, deadline=None)
def test_literals_round_trip(value: Any) -> None:
    result = evaluate_template("${{ " + to_source(value) + " }}", {})
    assert json.dumps(result) == json.dumps(value)


@given(literals)
@settings(max_examples=100, deadline=None)
def test_values_from_scope_keep_their_type(value: Any) -> None:
    assert evaluate_template("${{ params.v }}", {"params": {"v": value}}) == value


@given(st.text(max_size=80))
@settings(max_examples=500, deadline=None)
def test_garbage_only_ever_raises_expression_errors(text: str) -> None:
    for candidate in (text, "${{ " + text + " }}", "${{" + text):
        with contextlib.suppress(ExpressionError):
            evaluate_template(candidate, SCOPE)


operators = st.sampled_from(
    ["==", "!=", "<", "<=", ">", ">=", "and", "or", "in", "not in", "+", "-", "*", "/", "%", "|"]
)
atoms = st.sampled_from(
    ["params.limit", "params.tags", "'a'", "1", "2.5", "null", "true", "[1, 2]", "item", "index", "run.id", "length"]
)


@given(st.lists(st.tuples(atoms, operators), min_size=1, max_size=8), atoms)
@settings(max_examples=300, deadline=None)
def test_random_operator_chains_only_raise_expression_errors(pairs: list[tuple[str, str]], last: str) -> None:
    source = " ".join(f"{atom} {op}" for atom, op in pairs) + f" {last}"
    with contextlib.suppress(ExpressionError):
        evaluate_template("${{ " + source + " }}", SCOPE)


@given(st.text(max_size=60).filter(lambda t: "${{" not in t))
def test_text_without_expressions_is_unchanged(text: str) -> None:
    assert evaluate_template(text, SCOPE) == text
