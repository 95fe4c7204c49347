"""Parsing agent specs: the round trip (property-based) and every document-level validation error, with lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtuousai.agents.spec import AgentSpecDocument, Permissions, parse_spec, render_spec
from virtuousai.agents.tools import CALL_AGENT, TOOLS
from virtuousai.errors import ValidationFailed

slugs = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}", fullmatch=True)
# Printable text without leading/trailing whitespace (the parser trims the body; YAML keeps scalars exact).
text = (
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="\ufeff"),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
instructions = st.lists(text, min_size=1, max_size=5).map("\n\n".join)
models = st.one_of(st.none(), st.sampled_from(["fast", "orchestrator", "openai:gpt-4.1", "anthropic:claude-haiku-4-5"]))
costs = st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False))
names = st.lists(slugs, unique=True, max_size=3).map(tuple)


@st.composite
def documents(draw: st.DrawFn) -> AgentSpecDocument:
    slug = draw(slugs)
    mode = draw(st.sampled_from(["primary", "subagent"]))
    tools = draw(st.lists(st.sampled_from([t for t in TOOLS if t != CALL_AGENT]), unique=True, max_size=4))
    sub_agents: tuple[str, ...] = ()
    if mode == "primary" and draw(st.booleans()):
        sub_agents = draw(st.lists(slugs.filter(lambda s: s != slug), unique=True, min_size=1, max_size=3).map(tuple))
        tools.append(CALL_AGENT)
    return AgentSpecDocument(
        name=draw(text),
        slug=slug,
        mode=mode,
        model=draw(models),
        tools=tuple(tools),
        sub_agents=sub_agents,
        permissions=Permissions(
            allowed_connections=draw(st.one_of(st.none(), names)),
            allowed_actions=draw(st.one_of(st.none(), names)),
            max_cost_per_run=draw(costs),
        ),
        description=draw(st.one_of(st.none(), text)),
        instructions=draw(instructions),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_rendered_specs_parse_back_to_the_same_fields(document: AgentSpecDocument) -> None:
    markdown = render_spec(document)
    parsed = parse_spec(markdown)
    assert parsed == document
    assert render_spec(parsed) == markdown


SPEC = """---
name: Data Analyst
slug: data-analyst
mode: primary
model: orchestrator
tools:
  - generate_query
  - explain_schema
  - create_flashboard
sub_agents:
  - sql-expert
permissions:
  max_cost_per_run: 5.00
---

# Goal

You are a data analyst specializing in e-commerce metrics.
"""


def test_the_seed_example_parses() -> None:
    spec = parse_spec(SPEC)
    assert (spec.name, spec.slug, spec.mode, spec.model) == ("Data Analyst", "data-analyst", "primary", "orchestrator")
    assert spec.tools == ("generate_query", "explain_schema", "create_flashboard")
    assert spec.sub_agents == ("sql-expert",)
    assert spec.permissions.max_cost_per_run == Decimal("5.00")
    assert spec.instructions.startswith("# Goal\n\nYou are a data analyst")


def errors_of(markdown: str) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec(markdown)
    assert caught.value.status == 422
    return [dict(e) for e in caught.value.errors]


def with_frontmatter(frontmatter: str, body: str = "Do the thing.") -> str:
    return f"---\n{frontmatter.strip()}\n---\n\n{body}\n"


BASE = "name: A\nslug: a\nmode: primary\ntools: [generate_query]"
LOC = ["body", "markdown"]


@pytest.mark.parametrize(
    ("markdown", "loc", "line", "message"),
    [
        # YAML syntax: the line of the problem in the whole document (line 1 is the opening ---).
        (with_frontmatter("name: A\nslug: a\nmode: [primary\ntools: []"), [], 5, "YAML syntax error"),
        (with_frontmatter(BASE + "\ncolour: blue"), ["colour"], 6, "unknown field"),
        (with_frontmatter("name: A\nslug: a\ntools: []"), ["mode"], 5, "field required"),
        (with_frontmatter("name: A\nslug: a\nmode: primary"), ["tools"], 5, "field required"),
        (
            with_frontmatter(BASE.replace("[generate_query]", "[generate_query, send_email]")),
            ["tools", 1],
            5,
            "unknown tool",
        ),
        (with_frontmatter(BASE.replace("slug: a", "slug: Data_Analyst")), ["slug"], 3, "lowercase"),
        (with_frontmatter(BASE.replace("slug: a", "slug: -a")), ["slug"], 3, "lowercase"),
        (with_frontmatter(BASE.replace("mode: primary", "mode: boss")), ["mode"], 4, "'primary' or 'subagent'"),
        (
            with_frontmatter(BASE.replace("mode: primary", "mode: subagent") + "\nsub_agents: [b]"),
            ["sub_agents"],
            6,
            "subagent cannot delegate",
        ),
        (
            with_frontmatter("name: A\nslug: a\nmode: subagent\ntools:\n  - generate_query\n  - call_agent"),
            ["tools", 1],
            7,
            "subagent cannot use call_agent",
        ),
        (
            with_frontmatter(BASE.replace("[generate_query]", "[call_agent]") + "\nsub_agents:\n  - b\n  - a"),
            ["sub_agents", 1],
            8,
            "cannot list itself",
        ),
        (
            with_frontmatter(BASE.replace("[generate_query]", "[call_agent]")),
            ["tools", 0],
            5,
            "call_agent needs sub_agents",
        ),
        (with_frontmatter(BASE + "\npermissions:\n  max_cost: 3"), ["permissions", "max_cost"], 7, "unknown field"),
        (
            with_frontmatter(BASE + "\npermissions:\n  max_cost_per_run: -1"),
            ["permissions", "max_cost_per_run"],
            7,
            ">= 0",
        ),
        (with_frontmatter(BASE + "\nname: B"), ["name"], 6, "duplicate key"),
        (with_frontmatter(BASE.replace("name: A", "name: 42")), ["name"], 2, "non-empty string"),
        (with_frontmatter(BASE, body=""), ["instructions"], 7, "body"),
        ("name: A\n---\nbody\n", [], 1, "starts with a '---' line"),
        ("---\nname: A\nslug: a\n", [], 4, "not closed"),
        (with_frontmatter("- just\n- a list"), [], 2, "YAML mapping"),
        (
            with_frontmatter(BASE + "\nsub_agents: &x [b]\npermissions:\n  allowed_actions: *x"),
            ["permissions", "allowed_actions"],
            8,
            "aliases are not allowed",
        ),
        (with_frontmatter(BASE + "\ndescription: " + "[" * 5000 + "]" * 5000), [], 2, "nested too deeply"),
    ],
)
def test_each_document_error_names_its_field_and_line(markdown: str, loc: list[Any], line: int, message: str) -> None:
    errors = errors_of(markdown)
    matching = [e for e in errors if e["loc"] == LOC + loc]
    assert matching, errors
    assert matching[0]["line"] == line
    assert message in matching[0]["msg"]


def test_all_errors_are_reported_at_once() -> None:
    errors = errors_of(with_frontmatter("name: A\nslug: Bad Slug\nmode: x\ntools: [nope]\nextra: 1"))
    assert {tuple(e["loc"][2:]) for e in errors} == {("slug",), ("mode",), ("tools", 0), ("extra",)}
