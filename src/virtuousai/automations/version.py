"""A version's spec compiled once per process: its graph, its steps by key, and which steps each step's expressions
read (so a pass reads only the outputs some expression needs). Versions never change, so the compiled form is kept
(a small LRU) instead of being rebuilt on every pass."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.automations.graph import StepGraph, build_graph, expression_fields
from virtuousai.automations.spec import AutomationSpec, Step
from virtuousai.automations.tables import AutomationVersion
from virtuousai.expressions.evaluation import ExpressionError, parse_condition, parse_template, step_references
from virtuousai.expressions.syntax import Literal, Lookup, Name, nodes_of


@dataclass(frozen=True)
class CompiledVersion:
    """``reads[key]``: the steps whose outputs step ``key``'s expressions read (``None``: any, through a computed
    lookup such as ``steps[params.name]``); ``read_outputs_of`` the union (``None``: every step's)."""

    spec: AutomationSpec
    graph: StepGraph
    steps: dict[str, Step]
    reads: dict[str, frozenset[str] | None]
    read_outputs_of: frozenset[str] | None


def steps_read_by(step: Step) -> frozenset[str] | None:
    """The step keys a step's expressions look up, or ``None`` when one uses ``steps`` other than as
    ``steps.<key>`` / ``steps['<key>']`` (then it may read any step)."""
    keys: set[str] = set()
    for _, text, is_condition in expression_fields(step):
        try:
            parsed = parse_condition(text) if is_condition else parse_template(text)
        except ExpressionError:
            continue  # validation refused it at create time; at run time it fails the step
        nodes = list(nodes_of(parsed))
        uses = sum(isinstance(node, Name) and node.name == "steps" for node in nodes)
        static = sum(
            isinstance(node, Lookup)
            and isinstance(node.target, Name)
            and node.target.name == "steps"
            and isinstance(node.key, Literal)
            and isinstance(node.key.value, str)
            for node in nodes
        )
        if uses != static:
            return None
        keys |= step_references(parsed)
    return frozenset(keys)


def compile_version(spec: AutomationSpec) -> CompiledVersion:
    reads = {step.key: steps_read_by(step) for step in spec.steps}
    read_outputs_of: frozenset[str] | None = frozenset()
    for keys in reads.values():
        read_outputs_of = None if keys is None or read_outputs_of is None else read_outputs_of | keys
    steps = {step.key: step for step in spec.steps}
    return CompiledVersion(spec, build_graph(spec), steps, reads, read_outputs_of)


_COMPILED: OrderedDict[str, CompiledVersion] = OrderedDict()
_COMPILED_MAX = 256


async def compiled_version(session: AsyncSession, version_id: str) -> CompiledVersion:
    """The compiled version ``version_id`` (the caller read the run, in its tenant, that names it)."""
    if version_id in _COMPILED:
        _COMPILED.move_to_end(version_id)
        return _COMPILED[version_id]
    version = await session.get(AutomationVersion, version_id)
    assert version is not None  # runs reference their version (foreign key)
    _COMPILED[version_id] = compile_version(AutomationSpec.model_validate(version.spec))
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return _COMPILED[version_id]
