"""A chart tile's Vega-Lite v5 spec: what a saved spec may hold, which fields it names, and its rendering.

A tile's spec is one view (``mark`` and ``encoding`` at least) without data: the tile's rows are its data, inlined
as ``data.values`` when it is rendered, here (SVG, PNG through vl-convert) or in a browser (vega-embed). So a spec
may not bring its own ``data``, and nothing in it may name a URL: rendering on the server reads nothing from
anywhere (vl-convert is also given no allowed base URL, a second wall).

``chart_errors`` checks a spec against the columns its SQL returns: every ``field`` the encoding names must be one
of them (or a name a ``transform`` defines with ``as``), so a chart cannot silently plot nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import vl_convert

from virtuousai.errors import FieldError, ValidationFailed

Loc = list[str | int]

# The keys a single-view spec may have; compositions (layer, concat, facet, repeat) and `data` are refused.
SPEC_KEYS = frozenset(
    {
        "$schema",
        "title",
        "description",
        "mark",
        "encoding",
        "transform",
        "width",
        "height",
        "autosize",
        "padding",
        "background",
        "config",
        "params",
        "projection",
    }
)
VEGA_LITE_SCHEMA_PREFIX = "https://vega.github.io/schema/vega-lite/v5"
# Transforms that define fields under default names when they have no `as`.
_DEFAULT_TRANSFORM_FIELDS = {"fold": ("key", "value"), "density": ("value", "density")}


def spec_errors(spec: Mapping[str, Any], loc: Loc) -> list[FieldError]:
    """What makes ``spec`` not a single-view Vega-Lite v5 spec we render (without looking at the columns)."""
    errors = [
        FieldError([*loc, key], "not allowed in a tile's chart (one view; its data are the tile's rows)")
        for key in sorted(spec.keys() - SPEC_KEYS)
    ]
    schema = spec.get("$schema")
    if schema is not None and not (isinstance(schema, str) and schema.startswith(VEGA_LITE_SCHEMA_PREFIX)):
        errors.append(FieldError([*loc, "$schema"], f"must be a Vega-Lite v5 schema ({VEGA_LITE_SCHEMA_PREFIX}…)"))
    mark = spec.get("mark")
    if not (isinstance(mark, str) and mark) and not (isinstance(mark, Mapping) and isinstance(mark.get("type"), str)):
        errors.append(FieldError([*loc, "mark"], 'required: a mark type such as "bar" or {"type": "line"}'))
    encoding = spec.get("encoding")
    if not isinstance(encoding, Mapping) or not encoding:
        errors.append(FieldError([*loc, "encoding"], "required: an object of channels (x, y, color, …)"))
    transform = spec.get("transform", [])
    if not isinstance(transform, list):
        errors.append(FieldError([*loc, "transform"], "must be a list of transforms"))
    errors += [
        FieldError(path, "no URLs in a tile's chart: it is rendered from the tile's rows only")
        for path in _url_paths(spec, loc)
    ]
    return errors


def chart_errors(spec: Mapping[str, Any], columns: Sequence[str], loc: Loc) -> list[FieldError]:
    """``spec_errors`` plus every encoded field that is neither a column of the tile's SQL nor defined by a
    transform, each at its own path (``[…, "encoding", "y", "field"]``)."""
    errors = spec_errors(spec, loc)
    if errors:
        return errors
    known = set(columns) | defined_fields(spec.get("transform", []))
    for path, name in encoded_fields(spec["encoding"], [*loc, "encoding"]):
        if not isinstance(name, str):
            errors.append(FieldError(path, "must be a column name (a string)"))
        elif name not in known:
            errors.append(
                FieldError(path, f"field {name!r} is not a column of the tile's SQL (columns: {', '.join(columns)})")
            )
    return errors


def encoded_fields(encoding: Mapping[str, Any], loc: Loc) -> Iterator[tuple[Loc, Any]]:
    """Every ``field`` the encoding names: in each channel definition (also a list of them, as ``tooltip`` takes),
    its ``condition`` and its ``sort``."""
    for channel, value in encoding.items():
        definitions = enumerate(value) if isinstance(value, list) else [(None, value)]
        for position, definition in definitions:
            if not isinstance(definition, Mapping):
                continue
            where: Loc = [*loc, channel] if position is None else [*loc, channel, position]
            if "field" in definition:
                yield [*where, "field"], definition["field"]
            for nested in ("condition", "sort"):
                inner = definition.get(nested)
                if isinstance(inner, Mapping) and "field" in inner:
                    yield [*where, nested, "field"], inner["field"]


def defined_fields(transform: Any) -> set[str]:
    """The field names the transforms define (``as``, also inside aggregate/window lists; fold's defaults)."""
    names: set[str] = set()
    if not isinstance(transform, list):
        return names
    for step in transform:
        if not isinstance(step, Mapping):
            continue
        names |= _as_names(step.get("as"))
        for key, defaults in _DEFAULT_TRANSFORM_FIELDS.items():
            if key in step and "as" not in step:
                names |= set(defaults)
        for key in ("aggregate", "window", "joinaggregate"):
            for item in step.get(key) or []:
                if isinstance(item, Mapping):
                    names |= _as_names(item.get("as"))
    return names


def _as_names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _url_paths(value: Any, loc: Loc) -> Iterator[Loc]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "url":
                yield [*loc, key]
            else:
                yield from _url_paths(inner, [*loc, key])
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            yield from _url_paths(inner, [*loc, position])


def with_rows(spec: Mapping[str, Any], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The spec with the rows inlined as its data (``data.values``, one object per row)."""
    return {**spec, "data": {"values": [dict(zip(columns, row, strict=True)) for row in rows]}}


class ChartRenderFailed(ValidationFailed):
    type_slug, title = "chart-render-failed", "Chart could not be rendered"


def render_svg(spec: Mapping[str, Any]) -> str:
    """An SVG document (blocking: call it in a thread). Nothing outside the spec is read."""
    try:
        svg: str = vl_convert.vegalite_to_svg(dict(spec), allowed_base_urls=[])
    except ValueError as exc:
        raise _render_failed(exc) from None
    return svg


def render_png(spec: Mapping[str, Any], *, scale: float = 2.0) -> bytes:
    """A PNG (blocking: call it in a thread), at ``scale`` times the spec's size."""
    try:
        png: bytes = vl_convert.vegalite_to_png(dict(spec), scale=scale, allowed_base_urls=[])
    except ValueError as exc:
        raise _render_failed(exc) from None
    return png


def _render_failed(exc: ValueError) -> ChartRenderFailed:
    first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
    return ChartRenderFailed(f"Vega-Lite could not render the tile's chart: {first[:500]}")
