"""The step DAG: dependencies (declared and inferred from expressions), topological order, cycles, Mermaid text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from virtuousai.automations.spec import AutomationSpec, Step
from virtuousai.expressions.evaluation import ExpressionError, parse_condition, parse_template, step_references


class CycleError(ValueError):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__("cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def expression_fields(step: Step) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
    """Every string of a step that may hold an expression: ``(path within the step, text, is_condition)``."""
    if isinstance(step.when, str):
        yield ("when",), step.when, True
    if step.for_each is not None:
        for path, text in string_leaves(step.for_each, ("for_each",)):
            yield path, text, False
    if step.connection is not None:
        yield ("connection",), step.connection, False
    for path, text in string_leaves(step.inputs, ("inputs",)):
        yield path, text, False


def string_leaves(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON value, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_leaves(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, (*path, key))


def referenced_steps(step: Step) -> set[str]:
    """Step keys this step's expressions name. Unparseable fields are skipped (validation reports them)."""
    keys: set[str] = set()
    for _, text, is_condition in expression_fields(step):
        try:
            keys |= step_references(parse_condition(text) if is_condition else parse_template(text))
        except ExpressionError:
            continue
    return keys


@dataclass(frozen=True)
class StepGraph:
    """Dependencies of each step (declared and referenced) and a topological order (spec order among equals)."""

    dependencies: dict[str, tuple[str, ...]]
    order: tuple[str, ...]
    # Derived from the two above once (the engine looks them up on every pass): each step's index in ``order``, and
    # the steps that depend on each step, in ``order``.
    position: dict[str, int] = field(init=False)
    dependents_of: dict[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        dependents: dict[str, list[str]] = {key: [] for key in self.order}
        for key in self.order:
            for dependency in self.dependencies[key]:
                dependents[dependency].append(key)
        object.__setattr__(self, "position", {key: index for index, key in enumerate(self.order)})
        object.__setattr__(self, "dependents_of", {key: tuple(keys) for key, keys in dependents.items()})

    def dependents(self, key: str) -> list[str]:
        return list(self.dependents_of[key])


def build_graph(spec: AutomationSpec) -> StepGraph:
    """The DAG of a spec whose references are known to exist. Raises ``CycleError`` naming one cycle."""
    position = {step.key: index for index, step in enumerate(spec.steps)}
    dependencies = {
        step.key: tuple(sorted(set(step.depends_on) | referenced_steps(step), key=lambda k: position.get(k, -1)))
        for step in spec.steps
    }
    cycle = find_cycle(dependencies, [step.key for step in spec.steps])
    if cycle:
        raise CycleError(cycle)
    # Kahn's algorithm, picking ready steps in spec order so the order is stable and reads like the file.
    remaining = {key: set(deps) for key, deps in dependencies.items()}
    order: list[str] = []
    while remaining:
        ready = min((key for key, deps in remaining.items() if not deps), key=position.__getitem__)
        order.append(ready)
        del remaining[ready]
        for deps in remaining.values():
            deps.discard(ready)
    return StepGraph(dependencies=dependencies, order=tuple(order))


def find_cycle(dependencies: dict[str, tuple[str, ...]], keys: list[str]) -> list[str] | None:
    """One cycle as ``[a, b, a]`` (a depends on b depends on a), or None. Iterative DFS, spec order."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(keys, WHITE)
    for start in keys:
        if color[start] != WHITE:
            continue
        path: list[str] = [start]
        iterators = [iter(dependencies.get(start, ()))]
        color[start] = GREY
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                color[path.pop()] = BLACK
                iterators.pop()
                continue
            if child not in color:
                continue
            if color[child] == GREY:
                return [*path[path.index(child) :], child]
            if color[child] == WHITE:
                color[child] = GREY
                path.append(child)
                iterators.append(iter(dependencies.get(child, ())))
    return None


def mermaid(spec: AutomationSpec) -> str:
    """The DAG as a Mermaid flowchart: one node per step (key and action), an edge per dependency.

    for_each steps are drawn as stacked shapes (``[[…]]``), conditional steps as hexagons (``{{…}}``)."""
    graph = build_graph(spec)
    lines = ["flowchart TD"]
    for key in graph.order:
        step = spec.step(key)
        target = step.action if step.action is not None else f"template {step.template}"
        label = _escape(f"{key}<br/>{target}")
        node = _node_id(key)
        if step.when is not None:
            lines.append(f'    {node}{{{{"{label}"}}}}')
        elif step.for_each is not None:
            lines.append(f'    {node}[["{label}<br/>for each"]]')
        else:
            lines.append(f'    {node}["{label}"]')
    for key in graph.order:
        step = spec.step(key)
        for dependency in graph.dependencies[key]:
            arrow = "-.->" if step.trigger == "all_done" else "-->"  # dotted: runs whatever the dependency's outcome
            lines.append(f"    {_node_id(dependency)} {arrow} {_node_id(key)}")
    return "\n".join(lines) + "\n"


# Words Mermaid reads as syntax; a step with such a key gets a prefixed node id (its label still shows the key).
_MERMAID_KEYWORDS = frozenset(
    {"end", "graph", "subgraph", "flowchart", "style", "class", "classDef", "click", "linkStyle", "direction"}
)


def _node_id(key: str) -> str:
    return f"step_{key}" if key in _MERMAID_KEYWORDS else key


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
