"""The syntax of ``${{ expression }}`` (see ``expressions.py``): tokens, the AST, a Pratt parser, templates
(text with ``${{ … }}`` parts) and the static analysis validation needs (names and step references)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "${{", "}}"
MAX_TEMPLATE_LENGTH = 20_000
# Depth of the parsed tree (operators, lookups, brackets): keeps the recursive parser and evaluator far from
# Python's recursion limit, whatever the input.
MAX_NESTING = 64
MAX_NUMBER_LENGTH = 64
MAX_INT_BITS = 256  # results beyond this are "out of range" rather than unbounded big integers
ROOT_NAMES = frozenset({"params", "steps", "item", "index", "run"})


class ExpressionError(ValueError):
    """Any failure of an expression. ``position`` is the offset in the template for syntax errors."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.message = message
        self.position = position


class UndefinedError(ExpressionError):
    """A name, key or index that does not exist; ``| default(x)`` catches exactly this."""


# ---------------------------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "str", "name", "op", "end"
    value: Any
    position: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<close>\}\})
  | (?P<op>==|!=|<=|>=|[<>()\[\],.|+\-*/%])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _unescape(raw: str, position: int) -> str:
    out: list[str] = []
    chars = iter(enumerate(raw))
    for offset, char in chars:
        if char != "\\":
            out.append(char)
            continue
        _, escaped = next(chars)
        if escaped not in _ESCAPES:
            raise ExpressionError(f"unknown escape \\{escaped} in string", position + offset)
        out.append(_ESCAPES[escaped])
    return "".join(out)


def tokenize(text: str, start: int = 0) -> tuple[list[Token], int | None]:
    """Tokens from ``text[start:]`` up to a closing ``}}`` (or the end of the text).

    Returns the tokens and the offset just after the ``}}``, or None when the text ended without one."""
    tokens: list[Token] = []
    position = start
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected character {text[position]!r}", position)
        kind, raw = match.lastgroup, match.group()
        if kind == "close":
            tokens.append(Token("end", None, position))
            return tokens, match.end()
        if kind == "num":
            if len(raw) > MAX_NUMBER_LENGTH:
                raise ExpressionError("number literal too long", position)
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            if isinstance(number, float) and not math.isfinite(number):
                raise ExpressionError(f"number out of range: {raw}", position)
            tokens.append(Token("num", number, position))
        elif kind == "str":
            tokens.append(Token("str", _unescape(raw[1:-1], position + 1), position))
        elif kind in ("name", "op"):
            tokens.append(Token(str(kind), raw, position))
        position = match.end()
    tokens.append(Token("end", None, position))
    return tokens, None


# ---------------------------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Name:
    name: str
    position: int


@dataclass(frozen=True)
class Lookup:
    """``target.key`` or ``target[key]``: a dictionary key or a list index, never a Python attribute."""

    target: Node
    key: Node
    position: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node
    position: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node
    position: int


@dataclass(frozen=True)
class Filter:
    name: str
    operand: Node
    args: tuple[Node, ...]
    position: int


Node = Literal | ListExpr | Name | Lookup | Unary | Binary | Filter

# ---------------------------------------------------------------------------------------------------------------
# Parser (Pratt): binding powers, loosest first. `|` binds tighter than comparisons: `x | length > 2`.

_INFIX_POWER = {
    "or": 10,
    "and": 20,
    "in": 40,
    "not in": 40,
    "==": 40,
    "!=": 40,
    "<": 40,
    "<=": 40,
    ">": 40,
    ">=": 40,
    "+": 50,
    "-": 50,
    "*": 60,
    "/": 60,
    "%": 60,
    "|": 70,
}
_NOT_POWER = 30  # `not a == b` is `not (a == b)`
_NEGATE_POWER = 65
_POSTFIX_POWER = 80
_KEYWORD_LITERALS = {"true": True, "false": False, "null": None}
FILTERS = frozenset({"length", "default", "json", "lower", "upper", "join"})


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def expect(self, value: str) -> Token:
        token = self.current
        if token.kind not in ("op", "name") or token.value != value:
            raise ExpressionError(f"expected {value!r}, found {_describe(token)}", token.position)
        return self.advance()

    def infix_operator(self) -> str | None:
        token = self.current
        if token.kind == "op" and token.value in _INFIX_POWER:
            return str(token.value)
        if token.kind == "name" and token.value in ("and", "or", "in"):
            return str(token.value)
        following = self.tokens[min(self.index + 1, len(self.tokens) - 1)]
        if token.kind == "name" and token.value == "not" and following.kind == "name" and following.value == "in":
            return "not in"
        return None

    def parse(self, min_power: int = 0) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels", self.current.position)
        left = self.prefix()
        while True:
            op = self.infix_operator()
            if op is None or _INFIX_POWER[op] <= min_power:
                break
            position = self.advance().position
            if op == "not in":
                self.advance()
            if op == "|":
                left = self.filter(left, position)
            else:
                # Comparisons do not chain (`a < b < c` is an error), so their right side binds one level tighter.
                right = self.parse(_INFIX_POWER[op] + (1 if _INFIX_POWER[op] == 40 else 0))
                left = Binary(op, left, right, position)
                if _INFIX_POWER[op] == 40 and self.infix_operator() in COMPARISONS:
                    raise ExpressionError("comparisons cannot be chained; use `and`", self.current.position)
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        token = self.advance()
        if token.kind in ("num", "str"):
            return self.postfix(Literal(token.value))
        if token.kind == "name":
            if token.value in _KEYWORD_LITERALS:
                return self.postfix(Literal(_KEYWORD_LITERALS[token.value]))
            if token.value == "not":
                return Unary("not", self.parse(_NOT_POWER), token.position)
            if token.value in ("and", "or", "in"):
                raise ExpressionError(f"unexpected {token.value!r}", token.position)
            _refuse_dunder(token.value, token.position)
            return self.postfix(Name(token.value, token.position))
        if token.kind == "op" and token.value == "-":
            return Unary("-", self.parse(_NEGATE_POWER), token.position)
        if token.kind == "op" and token.value == "(":
            inner = self.parse()
            self.expect(")")
            return self.postfix(inner)
        if token.kind == "op" and token.value == "[":
            return self.postfix(ListExpr(tuple(self.sequence("]"))))
        raise ExpressionError(f"expected a value, found {_describe(token)}", token.position)

    def sequence(self, closing: str) -> list[Node]:
        items: list[Node] = []
        while not (self.current.kind == "op" and self.current.value == closing):
            items.append(self.parse())
            if self.current.kind == "op" and self.current.value == ",":
                self.advance()
            elif not (self.current.kind == "op" and self.current.value == closing):
                raise ExpressionError(
                    f"expected ',' or {closing!r}, found {_describe(self.current)}", self.current.position
                )
        self.advance()
        return items

    def postfix(self, node: Node) -> Node:
        while self.current.kind == "op" and self.current.value in (".", "["):
            token = self.advance()
            if token.value == ".":
                key = self.advance()
                # `rows.0` indexes a list like `rows[0]`.
                if key.kind == "name" or (key.kind == "num" and isinstance(key.value, int)):
                    _refuse_dunder(key.value, key.position)
                    node = Lookup(node, Literal(key.value), token.position)
                else:
                    raise ExpressionError(f"expected a key after '.', found {_describe(key)}", key.position)
            else:
                key_node = self.parse()
                self.expect("]")
                if isinstance(key_node, Literal):
                    _refuse_dunder(key_node.value, token.position)
                node = Lookup(node, key_node, token.position)
        return node

    def filter(self, operand: Node, position: int) -> Node:
        name = self.advance()
        if name.kind != "name" or name.value not in FILTERS:
            known = ", ".join(sorted(FILTERS))
            raise ExpressionError(f"unknown filter {_describe(name)}; filters are {known}", name.position)
        args: list[Node] = []
        if self.current.kind == "op" and self.current.value == "(":
            self.advance()
            args = self.sequence(")")
        return Filter(str(name.value), operand, tuple(args), position)


COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})


def _refuse_dunder(name: object, position: int) -> None:
    """``__class__`` and its kind name Python's internals, never data: refused when the expression is parsed, so a
    spec that tries one is a 422 when it is stored, not a run that fails (evaluation reaches no attribute anyway)."""
    if isinstance(name, str) and len(name) > 4 and name.startswith("__") and name.endswith("__"):
        raise ExpressionError(f"{name!r} names Python's internals, not data: keys like it are not allowed", position)


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    return repr(token.value) if token.kind != "str" else "a string"


def parse_expression(text: str, start: int = 0) -> tuple[Node, int | None]:
    """Parse one expression from ``start`` up to ``}}`` (or the end of the text).

    Returns the AST and the offset after the ``}}`` (None when there was none)."""
    tokens, end = tokenize(text, start)
    parser = _Parser(tokens)
    if parser.current.kind == "end":
        raise ExpressionError("empty expression", parser.current.position)
    node = parser.parse()
    if parser.current.kind != "end":
        raise ExpressionError(f"unexpected {_describe(parser.current)}", parser.current.position)
    if _depth(node) > MAX_NESTING:
        raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels", start)
    return node, end


def _depth(root: Node) -> int:
    """Depth of the tree, computed without recursion (the tree may be deep before we refuse it)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in _children(node))
    return deepest


# ---------------------------------------------------------------------------------------------------------------
# Templates: text with ${{ … }} parts


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and expressions in order. ``whole`` is set when it is one expression only."""

    parts: tuple[str | Node, ...]
    whole: Node | None


def parse_template(text: str) -> Template:
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise ExpressionError(f"template longer than {MAX_TEMPLATE_LENGTH} characters", 0)
    parts: list[str | Node] = []
    position = 0
    while True:
        opening = text.find(OPEN, position)
        if opening < 0:
            if position < len(text):
                parts.append(text[position:])
            break
        if opening > position:
            parts.append(text[position:opening])
        node, end = parse_expression(text, opening + len(OPEN))
        if end is None:
            raise ExpressionError("missing '}}' to close '${{'", opening)
        parts.append(node)
        position = end
    expressions = [part for part in parts if not isinstance(part, str)]
    texts = [part for part in parts if isinstance(part, str)]
    whole = expressions[0] if len(expressions) == 1 and not "".join(texts).strip() else None
    return Template(tuple(parts), whole)


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and OPEN in value


def parse_condition(text: str) -> Node:
    """A ``when`` condition: ``${{ … }}`` or a bare expression."""
    template = parse_template(text) if OPEN in text else None
    if template is not None:
        if template.whole is None:
            raise ExpressionError("a condition must be one expression, not text around it", 0)
        return template.whole
    node, end = parse_expression(text)
    if end is not None:  # a stray `}}` in a bare expression
        raise ExpressionError("unexpected '}}'", end - len(CLOSE))
    return node


# ---------------------------------------------------------------------------------------------------------------
# Static analysis


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, Lookup):
        return (node.target, node.key)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Filter):
        return (node.operand, *node.args)
    return ()


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def nodes_of(template: Template | Node) -> Iterator[Node]:
    roots = [p for p in template.parts if not isinstance(p, str)] if isinstance(template, Template) else [template]
    for root in roots:
        yield from _walk(root)


def root_names(template: Template | Node) -> set[str]:
    return {node.name for node in nodes_of(template) if isinstance(node, Name)}


def keys_under(template: Template | Node, root: str) -> set[str]:
    """Keys looked up directly under a root name: ``steps.<key>`` / ``steps['<key>']``, ``params.<name>``."""
    keys: set[str] = set()
    for node in nodes_of(template):
        if (
            isinstance(node, Lookup)
            and isinstance(node.target, Name)
            and node.target.name == root
            and isinstance(node.key, Literal)
            and isinstance(node.key.value, str)
        ):
            keys.add(node.key.value)
    return keys


def step_references(template: Template | Node) -> set[str]:
    """Step keys named as ``steps.<key>`` or ``steps['<key>']``."""
    return keys_under(template, "steps")


def references(text: str) -> set[str]:
    """The step keys a template string refers to (for inferring ``depends_on``)."""
    return step_references(parse_template(text)) if has_expression(text) else set()
