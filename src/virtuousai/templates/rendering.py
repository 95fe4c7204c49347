"""Parameters and rendering: validate ``params`` against a template's JSON schema, then render the body with them.

A body's strings use the one expression language of the product, the automations' ``${{ expression }}``
(``virtuousai.expressions.evaluation``: sandboxed, never ``eval``), with ``params`` in scope:

- a string that is exactly one expression keeps the value's JSON type (``"${{ params.n }}"`` with ``n = 3`` renders
  ``3``); expressions inside a longer string are interpolated as text; filters work (``| default('x')``, ``| upper``);
- kind=action: expressions may name only ``params`` (an ActionRun's inputs are literal values);
- kind=automation: the body is an automation spec. Strings whose expressions name only ``params`` are rendered at
  instantiation; the others (naming ``steps``, ``item``, ``index`` or ``run``) are left for the automation engine,
  which runs with the same params, so a value does not depend on which of the two evaluates it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema_rs

from virtuousai.errors import FieldError
from virtuousai.expressions.evaluation import (
    Evaluator,
    ExpressionError,
    has_expression,
    keys_under,
    parse_template,
    root_names,
)

Loc = list[str | int]
TEMPLATE_NAMES = frozenset({"params"})  # what instantiation puts in scope


class RenderError(ValueError):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _no_remote_refs(uri: str) -> Any:
    # A schema must be self-contained: fetching a $ref would let a template author make the server send requests.
    raise ValueError(f"remote $ref {uri!r} is not allowed; put the definition under $defs")


# The drafts the validator ships. Any other ``$schema`` would be fetched from its URL, so it is refused first.
KNOWN_META_SCHEMAS = frozenset(
    uri + suffix
    for uri in (
        "http://json-schema.org/draft-04/schema",
        "http://json-schema.org/draft-06/schema",
        "http://json-schema.org/draft-07/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    )
    for suffix in ("", "#")
)


def _unknown_meta_schemas(value: Any, loc: Loc) -> Iterator[Loc]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "$schema" and item not in KNOWN_META_SCHEMAS:
                yield [*loc, "$schema"]
            yield from _unknown_meta_schemas(item, [*loc, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unknown_meta_schemas(item, [*loc, index])


def schema_errors(schema: Mapping[str, Any], loc: Loc) -> list[FieldError]:
    """Problems with a parameters schema: it must be a valid, self-contained JSON Schema for an object."""
    if schema.get("type", "object") != "object":
        return [FieldError([*loc, "type"], "the parameters schema must describe an object")]
    unknown = [FieldError(at, "unknown $schema; use a standard draft URI") for at in _unknown_meta_schemas(schema, loc)]
    if unknown:
        return unknown
    try:
        if not jsonschema_rs.meta.is_valid(dict(schema)):
            return [FieldError(loc, "not a valid JSON Schema")]
        jsonschema_rs.validator_for(dict(schema), retriever=_no_remote_refs)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return [FieldError(loc, str(exc).splitlines()[0])]
    return []


def params_errors(schema: Mapping[str, Any], params: Mapping[str, Any], loc: Loc) -> list[FieldError]:
    validator = jsonschema_rs.validator_for(dict(schema), retriever=_no_remote_refs)
    return [
        FieldError([*loc, *error.instance_path], error.message, "schema")
        for error in validator.iter_errors(dict(params))
    ]


def with_defaults(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus the top-level ``default`` of every property that was left out."""
    merged = dict(params)
    for name, spec in (schema.get("properties") or {}).items():
        if name not in merged and isinstance(spec, Mapping) and "default" in spec:
            merged[name] = spec["default"]
    return merged


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every string inside a JSON value, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, [*loc, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, [*loc, index])


def body_expression_errors(
    body: Mapping[str, Any], declared: set[str], later_names: frozenset[str], loc: Loc
) -> list[FieldError]:
    """Syntax errors, names other than ``params`` (and ``later_names``, evaluated after instantiation) and
    ``params.<name>`` not declared in the parameters schema, each at its location in the body."""
    allowed = ", ".join(sorted(TEMPLATE_NAMES | later_names))
    errors: list[FieldError] = []
    for at, text in _strings(body, loc):
        if not has_expression(text):
            continue
        try:
            template = parse_template(text)
        except ExpressionError as exc:
            errors.append(FieldError(at, f"expression syntax error: {exc}", "expression_syntax"))
            continue
        for name in sorted(root_names(template) - TEMPLATE_NAMES - later_names):
            errors.append(FieldError(at, f"unknown name {name!r}; this template can use {allowed}", "expression_scope"))
        for name in sorted(keys_under(template, "params") - declared):
            errors.append(FieldError(at, f"params.{name} is not declared in parameters.properties", "undeclared"))
    return errors


def render_body(body: Any, params: Mapping[str, Any], loc: Loc | None = None) -> Any:
    """A copy of ``body`` with every params-only expression evaluated; ``RenderError`` at ``loc`` (where the caller's
    params are) naming the body field for an expression that fails (a missing param without ``| default``)."""
    evaluator = Evaluator({"params": dict(params)})

    def render(value: Any, path: Loc) -> Any:
        if isinstance(value, str):
            if not has_expression(value):
                return value
            try:
                template = parse_template(value)
                if root_names(template) - TEMPLATE_NAMES:
                    return value  # names the automation engine's scope: evaluated at run time, same params
                return evaluator.render(template)
            except ExpressionError as exc:
                where = ".".join(map(str, ["body", *path]))
                raise RenderError(loc or [], f"{where}: {exc}") from None
        if isinstance(value, Mapping):
            return {key: render(item, [*path, str(key)]) for key, item in value.items()}
        if isinstance(value, list):
            return [render(item, [*path, index]) for index, item in enumerate(value)]
        return value

    return render(body, [])
