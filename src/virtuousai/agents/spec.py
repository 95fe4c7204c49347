"""Agent specs: markdown with YAML frontmatter, parsed strictly, with errors that name the line and the field.

    ---                       <- line 1
    name: Data Analyst
    slug: data-analyst
    mode: primary
    tools: [generate_query]
    ---
    # Goal                    <- the body: the agent's instructions
    …

This module is pure (no database): the document's own rules. The rules that need the organization (sub-agents
exist, the slug is free, the model alias is known) are in ``service.py``. Errors are collected, not stopped at the
first, and raised together as one ``ValidationFailed`` whose entries carry ``loc`` (``["body", "markdown", "tools",
1]``), ``msg``, ``type`` and ``line`` (1-based, in the whole markdown document).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import yaml

from virtuousai.agents.tools import CALL_AGENT, TOOLS
from virtuousai.errors import FieldError, ValidationFailed

FENCE = "---"
MAX_MARKDOWN_BYTES = 100_000
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX = 63
NAME_MAX = 200
DESCRIPTION_MAX = 500
MODEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,199}$")
MARKDOWN_LOC: tuple[str, ...] = ("body", "markdown")

Mode = Literal["primary", "subagent"]
OnReject = Literal["cancel", "continue"]
MODES: tuple[Mode, ...] = ("primary", "subagent")
FIELDS = ("name", "slug", "mode", "model", "tools", "sub_agents", "permissions", "description", "on_reject")
REQUIRED = ("name", "slug", "mode", "tools")
PERMISSION_FIELDS = ("allowed_connections", "allowed_actions", "max_cost_per_run")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Permissions:
    """``None`` means "not restricted"; an empty list means "none allowed"."""

    allowed_connections: tuple[str, ...] | None = None
    allowed_actions: tuple[str, ...] | None = None
    max_cost_per_run: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_connections": None if self.allowed_connections is None else list(self.allowed_connections),
            "allowed_actions": None if self.allowed_actions is None else list(self.allowed_actions),
            "max_cost_per_run": None if self.max_cost_per_run is None else str(self.max_cost_per_run),
        }


@dataclass(frozen=True)
class AgentSpecDocument:
    name: str
    slug: str
    mode: Mode
    tools: tuple[str, ...]
    instructions: str
    model: str | None = None
    sub_agents: tuple[str, ...] = ()
    permissions: Permissions = Permissions()
    description: str | None = None
    # When a human rejects a write tool's call: end the run CANCELLED ``rejected``, or tell the model and go on.
    on_reject: OnReject = "cancel"
    # Where each field was written (field path -> 1-based line), for the errors only the service can find.
    lines: Mapping[Path, int] = field(default_factory=dict, compare=False, repr=False)


class SpecErrors:
    """Collects errors; ``raise_if_any`` raises them as one 422."""

    def __init__(self, lines: Mapping[Path, int] | None = None) -> None:
        self.errors: list[FieldError] = []
        self.lines = dict(lines or {})

    def add(self, path: Path, msg: str, type: str = "value_error", *, line: int | None = None) -> None:
        error = FieldError([*MARKDOWN_LOC, *path], msg, type)
        if line is None:
            line = self._line(path)
        if line is not None:
            error["line"] = line
        self.errors.append(error)

    def _line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        first = self.errors[0]
        where = f"line {first['line']}: " if "line" in first else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        raise ValidationFailed(f"invalid agent spec: {where}{first['msg']}{more}", errors=self.errors)


# --- splitting and YAML -------------------------------------------------------------------------------------------


def _split(markdown: str, errors: SpecErrors) -> tuple[str, str, int] | None:
    """(frontmatter, body, line of the closing fence) or None after recording why not."""
    lines = markdown.split("\n")
    if not lines or lines[0].rstrip("\r") != FENCE:
        errors.add((), "an agent spec starts with a '---' line, then YAML frontmatter, then '---'", line=1)
        return None
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r") == FENCE:
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 1
    errors.add((), "the frontmatter is not closed by a '---' line", line=len(lines))
    return None


def _node_lines(node: yaml.Node, path: Path, out: dict[Path, int], errors: SpecErrors, seen: set[int]) -> None:
    """Map every field path to its 1-based line in the document (the frontmatter starts on line 2).

    A node met twice is a YAML alias: refused, since a spec has no use for them and walking a graph of aliases
    ("billion laughs") would take exponential time.
    """
    if id(node) in seen:
        # The line of the key that uses the alias (the shared node's own mark is the anchor's).
        line = out.get(path, node.start_mark.line + 2)
        errors.add(path, "YAML anchors and aliases are not allowed in a spec", "yaml_alias", line=line)
        return
    seen.add(id(node))
    out[path] = node.start_mark.line + 2
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                errors.add((*path, key), f"duplicate key {key!r}", "duplicate_key", line=key_node.start_mark.line + 2)
            keys.add(key)
            out[(*path, key)] = key_node.start_mark.line + 2
            _node_lines(value_node, (*path, key), out, errors, seen)
            out[(*path, key)] = key_node.start_mark.line + 2  # a field's line is its key's, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), out, errors, seen)


def _load_frontmatter(text: str, errors: SpecErrors) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 2
        errors.add((), f"YAML syntax error: {exc.problem or exc.context}", "yaml_syntax", line=line)
        return None
    except yaml.YAMLError as exc:
        errors.add((), f"YAML syntax error: {exc}", "yaml_syntax", line=2)
        return None
    except RecursionError:
        errors.add((), "the frontmatter is nested too deeply", "yaml_depth", line=2)
        return None
    if node is not None:
        _node_lines(node, (), errors.lines, errors, set())
    return data


# --- field checks -------------------------------------------------------------------------------------------------


def _string(data: Mapping[str, Any], key: str, errors: SpecErrors, *, max_len: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add((key,), "must be a non-empty string", "string_type")
        return None
    if len(value) > max_len:
        errors.add((key,), f"at most {max_len} characters", "string_too_long")
        return None
    return value


def _string_list(data: Mapping[str, Any], key: str, errors: SpecErrors, path: Path | None = None) -> list[str] | None:
    value = data.get(key)
    where = path or (key,)
    if value is None:
        return None
    if not isinstance(value, list):
        errors.add(where, "must be a list of strings", "list_type")
        return None
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            errors.add((*where, index), "must be a non-empty string", "string_type")
        elif item in items:
            errors.add((*where, index), f"{item!r} is listed twice", "duplicate")
        else:
            items.append(item)
    return items


def _permissions(data: Mapping[str, Any], errors: SpecErrors) -> Permissions:
    raw = data.get("permissions")
    if raw is None:
        return Permissions()
    if not isinstance(raw, dict):
        errors.add(("permissions",), "must be an object", "dict_type")
        return Permissions()
    for key in raw:
        if key not in PERMISSION_FIELDS:
            errors.add(("permissions", str(key)), f"unknown field; allowed: {', '.join(PERMISSION_FIELDS)}", "extra")
    connections = _string_list(raw, "allowed_connections", errors, ("permissions", "allowed_connections"))
    actions = _string_list(raw, "allowed_actions", errors, ("permissions", "allowed_actions"))
    cost = raw.get("max_cost_per_run")
    max_cost: Decimal | None = None
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
            errors.add(("permissions", "max_cost_per_run"), "must be a number >= 0 (USD)", "number_type")
        else:
            max_cost = Decimal(str(cost))
    return Permissions(
        allowed_connections=tuple(connections) if connections is not None else None,
        allowed_actions=tuple(actions) if actions is not None else None,
        max_cost_per_run=max_cost,
    )


def _check_rules(
    slug: str | None, mode: str | None, tools: Sequence[str], sub_agents: Sequence[str], errors: SpecErrors
) -> None:
    """The delegation rules of seeds/002: explicit sub_agents, no self-calls, subagents cannot delegate."""
    for index, tool in enumerate(tools):
        if tool not in TOOLS:
            errors.add(("tools", index), f"unknown tool {tool!r}; known: {', '.join(TOOLS)}", "unknown_tool")
    if mode == "subagent":
        if sub_agents:
            errors.add(("sub_agents",), "a subagent cannot delegate, so it cannot list sub_agents", "subagent_rule")
        if CALL_AGENT in tools:
            errors.add(("tools", tools.index(CALL_AGENT)), "a subagent cannot use call_agent", "subagent_rule")
    elif CALL_AGENT in tools and not sub_agents:
        errors.add(
            ("tools", tools.index(CALL_AGENT)), "call_agent needs sub_agents listing who may be called", "call_agent"
        )
    if slug is not None and slug in sub_agents:
        errors.add(("sub_agents", sub_agents.index(slug)), "an agent cannot list itself", "self_call")
    for index, sub in enumerate(sub_agents):
        if not SLUG_PATTERN.match(sub):
            errors.add(("sub_agents", index), f"{sub!r} is not an agent slug", "slug_format")


def parse_spec(markdown: str) -> AgentSpecDocument:
    """Parse and check one spec document; raises ``ValidationFailed`` listing every problem with its line."""
    errors = SpecErrors()
    if len(markdown.encode()) > MAX_MARKDOWN_BYTES:
        errors.add((), f"an agent spec is at most {MAX_MARKDOWN_BYTES} bytes", "too_long", line=1)
        errors.raise_if_any()
    split = _split(markdown, errors)
    errors.raise_if_any()
    assert split is not None
    frontmatter, body, closing_line = split
    data = _load_frontmatter(frontmatter, errors)
    errors.raise_if_any()
    if not isinstance(data, dict):
        errors.add((), "the frontmatter must be a YAML mapping of fields", "dict_type", line=2)
        errors.raise_if_any()

    for key in data:
        if key not in FIELDS:
            errors.add((str(key),), f"unknown field; allowed: {', '.join(FIELDS)}", "extra_forbidden")
    for key in REQUIRED:
        if data.get(key) is None:
            errors.add((key,), "field required", "missing", line=closing_line)

    name = _string(data, "name", errors, max_len=NAME_MAX)
    slug = _string(data, "slug", errors, max_len=SLUG_MAX)
    if slug is not None and not SLUG_PATTERN.match(slug):
        errors.add(("slug",), "lowercase letters and digits in words joined by '-', e.g. data-analyst", "slug_format")
    mode = data.get("mode")
    if mode is not None and mode not in MODES:
        errors.add(("mode",), "must be 'primary' or 'subagent'", "literal_error")
    model = _string(data, "model", errors, max_len=200)
    if model is not None and not MODEL_PATTERN.match(model):
        errors.add(("model",), "must be a model alias (e.g. fast) or provider:model", "model_format")
    description = _string(data, "description", errors, max_len=DESCRIPTION_MAX)
    on_reject = data.get("on_reject", "cancel")
    if on_reject not in ("cancel", "continue"):
        errors.add(("on_reject",), "must be 'cancel' (the default) or 'continue'", "literal_error")
    tools = _string_list(data, "tools", errors) or []
    sub_agents = _string_list(data, "sub_agents", errors) or []
    permissions = _permissions(data, errors)
    _check_rules(slug, mode if isinstance(mode, str) else None, tools, sub_agents, errors)
    instructions = body.strip()
    if not instructions:
        errors.add(
            ("instructions",), "the markdown body (the agent's instructions) is empty", "missing", line=closing_line + 1
        )
    errors.raise_if_any()
    assert name is not None and slug is not None and mode in MODES
    return AgentSpecDocument(
        name=name,
        slug=slug,
        mode=mode,
        model=model,
        tools=tuple(tools),
        sub_agents=tuple(sub_agents),
        permissions=permissions,
        description=description,
        instructions=instructions,
        on_reject=on_reject,
        lines=errors.lines,
    )


def render_spec(spec: AgentSpecDocument) -> str:
    """The markdown for a spec: fields in the documented order, optional ones only when set."""
    front: dict[str, Any] = {"name": spec.name, "slug": spec.slug, "mode": spec.mode}
    if spec.description is not None:
        front["description"] = spec.description
    if spec.model is not None:
        front["model"] = spec.model
    front["tools"] = list(spec.tools)
    if spec.sub_agents:
        front["sub_agents"] = list(spec.sub_agents)
    permissions = {k: v for k, v in spec.permissions.as_dict().items() if v is not None}
    if "max_cost_per_run" in permissions:
        permissions["max_cost_per_run"] = float(permissions["max_cost_per_run"])
    if permissions:
        front["permissions"] = permissions
    if spec.on_reject != "cancel":
        front["on_reject"] = spec.on_reject
    yaml_text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return f"{FENCE}\n{yaml_text}{FENCE}\n\n{spec.instructions}\n"
