"""Template bodies use the automations' expression language: rendering, and the checks made when a template is saved."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import OrgHandle
from virtuousai.templates.rendering import RenderError, body_expression_errors, render_body

PARAMS = {"table": "orders", "n": 3, "tags": ["a", "b"], "opt": None}


@pytest.mark.parametrize(
    ("body", "rendered"),
    [
        ("${{ params.n }}", 3),  # one expression keeps its JSON type
        ("  ${{ params.tags }} ", ["a", "b"]),
        ("rows of ${{ params.table }} (${{ params.n }})", "rows of orders (3)"),
        ("${{ params.tags | join('+') | upper }}", "A+B"),
        ("${{ params.missing | default('x') }}", "x"),
        ("${{ params.opt | default(params.n * 2) }}", 6),
        ("${{ params.n > 2 and 'b' in params.tags }}", True),
        ({"nested": [{"t": "${{ params.table }}"}, 1, None]}, {"nested": [{"t": "orders"}, 1, None]}),
        # Names of an automation's run scope are left for the engine, which has the same params.
        ("${{ steps.a.output.rows }}", "${{ steps.a.output.rows }}"),
        ("${{ params.n }} and ${{ item }}", "${{ params.n }} and ${{ item }}"),
        ("no expression", "no expression"),
    ],
)
def test_render_body(body: Any, rendered: Any) -> None:
    assert render_body(body, PARAMS) == rendered


def test_a_missing_param_names_the_body_field() -> None:
    with pytest.raises(RenderError) as caught:
        render_body({"inputs": {"x": "${{ params.absent }}"}}, PARAMS, ["body", "params"])
    assert caught.value.loc == ["body", "params"]
    assert str(caught.value).startswith("body.inputs.x: no key 'absent'")


def test_body_expression_errors() -> None:
    body = {
        "ok": "${{ params.table | upper }}",
        "syntax": "${{ params.table + }}",
        "later": "${{ steps.a.output }}",
        "undeclared": ["${{ params.other }}"],
    }
    errors = body_expression_errors(body, {"table"}, frozenset(), ["body", "body"])
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "body", "syntax"], "expression_syntax"),
        (["body", "body", "later"], "expression_scope"),
        (["body", "body", "undeclared", 0], "undeclared"),
    ]
    # An automation template may leave names of the run's scope for the engine.
    assert body_expression_errors({"later": "${{ steps.a.output }}"}, set(), frozenset({"steps"}), []) == []


PARAMETERS = {"type": "object", "properties": {"table": {"type": "string"}}, "required": ["table"]}


@pytest.mark.parametrize(
    ("kind", "body", "loc"),
    [
        ("action", {"kind": "echo", "inputs": {"x": "${{ steps.a.output }}"}}, ["body", "body", "inputs", "x"]),
        ("action", {"kind": "echo", "inputs": {"x": "${{ params.table ) }}"}}, ["body", "body", "inputs", "x"]),
        ("automation", {"name": "${{ secrets.x }}"}, ["body", "body", "name"]),
    ],
)
async def test_bad_expressions_are_refused_when_a_template_is_saved(
    client: httpx.AsyncClient, org: OrgHandle, kind: str, body: dict[str, Any], loc: list[str]
) -> None:
    payload = {"kind": kind, "name": "t", "slug": "t", "parameters": PARAMETERS, "body": body}
    response = await client.post("/api/v1/templates", headers=org.headers, json=payload)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [loc]


async def test_an_action_template_renders_filters_through_the_api(client: httpx.AsyncClient, org: OrgHandle) -> None:
    body = {"kind": "echo", "inputs": {"t": "${{ params.table | upper }}", "len": "${{ params.table | length }}"}}
    payload = {"kind": "action", "name": "t", "slug": "t", "parameters": PARAMETERS, "body": body}
    assert (await client.post("/api/v1/templates", headers=org.headers, json=payload)).status_code == 201
    response = await client.post("/api/v1/templates/slug:t/instantiate", headers=org.headers,
                                 json={"params": {"table": "abc"}})  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["run"]["inputs"] == {"t": "ABC", "len": 3}
