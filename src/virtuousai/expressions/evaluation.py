"""``${{ expression }}``: the one small, sandboxed expression language of automation specs.

Never Python ``eval``: a tokenizer, a Pratt parser to a small AST, and an evaluator over JSON values only
(None, bool, int, float, str, list, dict). Attribute access is a dictionary lookup, so nothing of Python's object
model (``__class__``, methods, modules) is reachable.

    params.day                      steps.extract.output.rows[0].id     item, index, run.id, run.started_at
    1, 2.5, 'text', "text", true, false, null, [1, 'a']
    == != < <= > >=   in   not in   and or not   + - * / %   ( … )
    value | length    value | default('x')    value | json    | lower | upper | join(', ')

A template that is only one expression (``"${{ steps.a.output.rows }}"``) evaluates to the value itself, so a list
stays a list; expressions inside longer text are interpolated as text. Every failure (syntax, a missing key, a type
mismatch) is an ``ExpressionError``; syntax errors carry the position in the template.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from virtuousai.expressions.syntax import (
    CLOSE,
    COMPARISONS,
    FILTERS,
    MAX_INT_BITS,
    MAX_NESTING,
    OPEN,
    Binary,
    ExpressionError,
    Filter,
    ListExpr,
    Literal,
    Lookup,
    Name,
    Node,
    Template,
    Token,
    Unary,
    UndefinedError,
    has_expression,
    keys_under,
    nodes_of,
    parse_condition,
    parse_expression,
    parse_template,
    references,
    root_names,
    step_references,
    tokenize,
)

__all__ = [
    "CLOSE",
    "FILTERS",
    "MAX_INT_BITS",
    "MAX_NESTING",
    "OPEN",
    "Binary",
    "Evaluator",
    "ExpressionError",
    "Filter",
    "ListExpr",
    "Literal",
    "Lookup",
    "Name",
    "Node",
    "Template",
    "Token",
    "Unary",
    "UndefinedError",
    "evaluate_condition",
    "evaluate_template",
    "has_expression",
    "keys_under",
    "nodes_of",
    "parse_condition",
    "parse_expression",
    "parse_template",
    "references",
    "render_value",
    "root_names",
    "step_references",
    "to_text",
    "tokenize",
    "truthy",
]

# ---------------------------------------------------------------------------------------------------------------
# Evaluation


# The names an automation step's expressions may use: everywhere, and inside a ``for_each`` step only.
GLOBAL_NAMES = frozenset({"params", "steps", "run"})
ITEM_NAMES = frozenset({"item", "index"})


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    # JSON equality: true is not 1.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(v, right[k]) for k, v in left.items())
    return bool(left == right)


def _lookup(target: Any, key: Any, position: int) -> Any:
    if isinstance(target, dict) and isinstance(key, str):
        if key not in target:
            raise UndefinedError(f"no key {key!r}", position)
        return target[key]
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        if not -len(target) <= key < len(target):
            raise UndefinedError(f"index {key} out of range (length {len(target)})", position)
        return target[key]
    raise ExpressionError(f"cannot look up {_type_name(key)} {key!r} in {_type_name(target)}", position)


def _arithmetic(op: str, left: Any, right: Any, position: int) -> Any:
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "+" and isinstance(left, list) and isinstance(right, list):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        raise ExpressionError(f"cannot apply {op!r} to {_type_name(left)} and {_type_name(right)}", position)
    if op in ("/", "%") and right == 0:
        raise ExpressionError("division by zero", position)
    result = {"+": left + right, "-": left - right, "*": left * right}.get(op)
    if result is None:
        result = left / right if op == "/" else left % right
    if (isinstance(result, float) and not math.isfinite(result)) or (
        isinstance(result, int) and result.bit_length() > MAX_INT_BITS
    ):
        raise ExpressionError("number out of range", position)
    return result


def _compare(op: str, left: Any, right: Any, position: int) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("in", "not in"):
        if isinstance(right, str) and isinstance(left, str):
            found = left in right
        elif isinstance(right, list):
            found = any(_equal(left, item) for item in right)
        elif isinstance(right, dict) and isinstance(left, str):
            found = left in right
        else:
            raise ExpressionError(f"cannot test {_type_name(left)} in {_type_name(right)}", position)
        return found if op == "in" else not found
    comparable = (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))
    if not comparable:
        raise ExpressionError(f"cannot compare {_type_name(left)} {op} {_type_name(right)}", position)
    return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op])


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != [] and value != {}


def to_text(value: Any) -> str:
    """How a value reads inside a longer string: text as is, null empty, everything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_FILTER_ARITY = {"length": 0, "default": 1, "json": 0, "lower": 0, "upper": 0, "join": 1}


class Evaluator:
    """Evaluates ASTs against a scope of JSON values (``params``, ``steps``, ``item``, ``index``, ``run``)."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope

    def evaluate(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, ListExpr):
            return [self.evaluate(item) for item in node.items]
        if isinstance(node, Name):
            if node.name not in self.scope:
                raise UndefinedError(f"unknown name {node.name!r}", node.position)
            return self.scope[node.name]
        if isinstance(node, Lookup):
            return _lookup(self.evaluate(node.target), self.evaluate(node.key), node.position)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._filter(node)

    def _unary(self, node: Unary) -> Any:
        operand = self.evaluate(node.operand)
        if node.op == "not":
            return not truthy(operand)
        if not _is_number(operand):
            raise ExpressionError(f"cannot negate {_type_name(operand)}", node.position)
        return -operand

    def _binary(self, node: Binary) -> Any:
        if node.op in ("and", "or"):
            left = truthy(self.evaluate(node.left))
            if left == (node.op == "or"):  # short-circuit: `x and x.y` is safe
                return left
            return truthy(self.evaluate(node.right))
        left, right = self.evaluate(node.left), self.evaluate(node.right)
        if node.op in COMPARISONS:
            return _compare(node.op, left, right, node.position)
        return _arithmetic(node.op, left, right, node.position)

    def _filter(self, node: Filter) -> Any:
        if len(node.args) > _FILTER_ARITY[node.name] or (node.name == "default" and len(node.args) != 1):
            raise ExpressionError(f"wrong number of arguments for filter {node.name!r}", node.position)
        if node.name == "default":
            try:
                value = self.evaluate(node.operand)
            except UndefinedError:
                value = None
            return self.evaluate(node.args[0]) if value is None else value
        value = self.evaluate(node.operand)
        if node.name == "length":
            if not isinstance(value, str | list | dict):
                raise ExpressionError(f"{_type_name(value)} has no length", node.position)
            return len(value)
        if node.name == "json":
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if node.name in ("lower", "upper"):
            if not isinstance(value, str):
                raise ExpressionError(f"{node.name} needs a string, got {_type_name(value)}", node.position)
            return value.lower() if node.name == "lower" else value.upper()
        separator = self.evaluate(node.args[0]) if node.args else ","
        if not isinstance(value, list) or not isinstance(separator, str):
            raise ExpressionError("join needs a list and a string separator", node.position)
        return separator.join(to_text(item) for item in value)

    def render(self, template: Template) -> Any:
        if template.whole is not None:
            return self.evaluate(template.whole)
        return "".join(part if isinstance(part, str) else to_text(self.evaluate(part)) for part in template.parts)


def evaluate_template(text: str, scope: Mapping[str, Any]) -> Any:
    """Render one string: the value itself when it is one expression, else text. Strings without ``${{`` pass."""
    if not has_expression(text):
        return text
    return Evaluator(scope).render(parse_template(text))


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON value (inputs are nested dicts and lists)."""
    if isinstance(value, str):
        return evaluate_template(value, scope)
    if isinstance(value, list):
        return [render_value(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, scope) for key, item in value.items()}
    return value


def evaluate_condition(text: str | bool, scope: Mapping[str, Any]) -> bool:
    if isinstance(text, bool):
        return text
    return truthy(Evaluator(scope).evaluate(parse_condition(text)))
