"""A minimal valid JSON value for an OpenAPI schema: required fields only, first choices, lower bounds.

Good enough for most request bodies, so a route test can get past body validation to the code it is about; where
it is not (patterns, cross-field rules), callers take a hand-written body instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from virtuousai.timeutil import utcnow

_FORMATS = {
    "date-time": lambda: (utcnow() + timedelta(days=1)).isoformat(),
    "date": lambda: (utcnow() + timedelta(days=1)).date().isoformat(),
    "email": lambda: "someone@example.com",
    "uri": lambda: "http://127.0.0.1:9/",
    "uuid": lambda: "00000000-0000-4000-8000-000000000000",
}


def sample_for(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    assert depth < 32, "schema nests too deeply (a recursive model?)"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return sample_for(components["schemas"][name], components, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [s for s in schema[combinator] if s.get("type") != "null"] or schema[combinator]
            return sample_for(options[0], components, depth + 1)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = sample_for(part, components, depth + 1)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {
            name: sample_for(properties.get(name, {}), components, depth + 1) for name in schema.get("required", [])
        }
    if kind == "array":
        count = schema.get("minItems", 0)
        return [sample_for(schema.get("items", {}), components, depth + 1) for _ in range(count)]
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]()
        return "x" * max(schema.get("minLength", 1), 1)
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return schema["minimum"]
        if "exclusiveMinimum" in schema:
            return schema["exclusiveMinimum"] + 1
        return 1
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def sample_request_body(openapi: dict[str, Any], method: str, path: str) -> Any:
    """A sample JSON body for ``method path`` of this OpenAPI document, or None when it takes no JSON body."""
    operation = openapi["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return sample_for(content["application/json"].get("schema", {}), openapi.get("components", {}))


def sample_required_query(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """Sample values for the required query parameters of ``method path`` (most routes have none)."""
    operation = openapi["paths"].get(path, {}).get(method.lower(), {})
    components = openapi.get("components", {})
    return {
        p["name"]: sample_for(p.get("schema", {}), components)
        for p in operation.get("parameters", [])
        if p.get("in") == "query" and p.get("required")
    }
