"""Parameters and rendering: validate ``params`` against a template's JSON schema, then substitute them into the body.

``render_body`` is the one rendering function; the automations primitive may replace it with its full expression
language. Today it understands ``${{ params.<name>[.<key>…] }}``:

- a string that is exactly one placeholder becomes the parameter's value, with its JSON type (``"${{ params.n }}"``
  with ``n = 3`` renders ``3``);
- placeholders inside a longer string are replaced by the value as text (JSON for objects and lists).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema_rs

from virtuousai.errors import FieldError

PLACEHOLDER = re.compile(r"\$\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
Loc = list[str | int]


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


def placeholders(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every ``(location, parameter path)`` the body refers to."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield loc, match.group(1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders(item, [*loc, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from placeholders(item, [*loc, index])


def _lookup(params: Mapping[str, Any], path: str, loc: Loc) -> Any:
    current: Any = params
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            raise RenderError(loc, f"params.{path} has no value")
        current = current[part]
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def render_body(body: Any, params: Mapping[str, Any], loc: Loc | None = None) -> Any:
    """A copy of ``body`` with the placeholders replaced; ``RenderError`` (with its location) for a missing value."""
    loc = loc or []
    if isinstance(body, str):
        whole = PLACEHOLDER.fullmatch(body.strip())
        if whole is not None:
            return _lookup(params, whole.group(1), loc)
        return PLACEHOLDER.sub(lambda m: _as_text(_lookup(params, m.group(1), loc)), body)
    if isinstance(body, Mapping):
        return {key: render_body(item, params, [*loc, str(key)]) for key, item in body.items()}
    if isinstance(body, list):
        return [render_body(item, params, [*loc, index]) for index, item in enumerate(body)]
    return body
