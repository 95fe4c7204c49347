"""Checks a spec as a whole before anything is stored: every problem becomes a ``FieldError`` with its path.

Shape errors are Pydantic's (``spec.py``); here: duplicate keys, unknown step references (in ``depends_on`` and in
expressions), cycles (``a -> b -> a``), unknown kinds, literal inputs that do not fit the kind's input schema,
expression syntax errors, names used out of scope, bad cron expressions and timezones, and the parameters schema.
Connections and templates need the database; the service checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema_rs
from croniter import croniter
from pydantic import BaseModel, ValidationError

from virtuousai.automations.graph import CycleError, build_graph, expression_fields, string_leaves
from virtuousai.automations.spec import AutomationSpec, CronTrigger, Step, cron_trigger_key
from virtuousai.errors import FieldError, ValidationFailed
from virtuousai.expressions.evaluation import (
    GLOBAL_NAMES,
    ITEM_NAMES,
    ExpressionError,
    Literal,
    Node,
    Template,
    has_expression,
    parse_condition,
    parse_template,
    root_names,
    step_references,
)
from virtuousai.runtime.kinds import KindRegistry

Loc = tuple[str | int, ...]
# `item` and `index` exist only while one item of a for_each step is rendered.


def validate_spec(spec: AutomationSpec, registry: KindRegistry, loc: Loc = ("body",)) -> list[FieldError]:
    """Every problem of the spec, in spec order (empty when it is valid)."""
    errors: list[FieldError] = []
    errors += _check_parameters_schema(spec, loc)
    keys = [step.key for step in spec.steps]
    for index, step in enumerate(spec.steps):
        step_loc = (*loc, "steps", index)
        if keys.index(step.key) != index:
            errors.append(FieldError((*step_loc, "key"), f"duplicate step key {step.key!r}", "duplicate"))
        for position, dependency in enumerate(step.depends_on):
            if dependency not in keys:
                errors.append(
                    FieldError((*step_loc, "depends_on", position), f"unknown step {dependency!r}", "unknown_step")
                )
            elif dependency == step.key:
                errors.append(
                    FieldError((*step_loc, "depends_on", position), "a step cannot depend on itself", "cycle")
                )
        errors += _check_expressions(step, set(keys), step_loc)
        if step.action is not None:
            errors += _check_kind(step, registry, step_loc)
    errors += _check_triggers(spec, loc)
    if not errors:
        try:
            build_graph(spec)
        except CycleError as exc:
            first = keys.index(exc.cycle[0])
            errors.append(FieldError((*loc, "steps", first, "depends_on"), "cycle: " + " -> ".join(exc.cycle), "cycle"))
    return errors


def raise_if_invalid(spec: AutomationSpec, registry: KindRegistry, loc: Loc = ("body",)) -> None:
    errors = validate_spec(spec, registry, loc)
    if errors:
        raise ValidationFailed(summary(errors), errors=errors)


def summary(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])


def _check_expressions(step: Step, keys: set[str], step_loc: Loc) -> list[FieldError]:
    errors: list[FieldError] = []
    for path, text, is_condition in expression_fields(step):
        if not is_condition and not has_expression(text):
            continue
        field_loc = (*step_loc, *path)
        parsed: Template | Node
        try:
            parsed = parse_condition(text) if is_condition else parse_template(text)
        except ExpressionError as exc:
            errors.append(FieldError(field_loc, f"expression syntax error: {exc}", "expression_syntax"))
            continue
        if path == ("for_each",) and isinstance(parsed, Template):
            errors += _for_each_errors(parsed, field_loc)
        in_item_scope = step.for_each is not None and path[0] in ("inputs", "connection")
        for name in sorted(root_names(parsed)):
            if name in ITEM_NAMES and not in_item_scope:
                where = "in the inputs of a step with `for_each`"
                errors.append(FieldError(field_loc, f"`{name}` is only defined {where}", "expression_scope"))
            elif name not in GLOBAL_NAMES | ITEM_NAMES:
                known = ", ".join(sorted(GLOBAL_NAMES | ITEM_NAMES))
                errors.append(FieldError(field_loc, f"unknown name {name!r}; names are {known}", "expression_scope"))
        for reference in sorted(step_references(parsed)):
            if reference == step.key:
                errors.append(FieldError(field_loc, "a step cannot reference its own output", "cycle"))
            elif reference not in keys:
                errors.append(FieldError(field_loc, f"unknown step {reference!r} in expression", "unknown_step"))
    return errors


def _for_each_errors(template: Template, field_loc: Loc) -> list[FieldError]:
    """A ``for_each`` expression that can be seen now never to give a list: text around the expression (the result
    is a string), or one literal that is not a list (``${{ 5 }}``)."""
    if template.whole is None:
        msg = "`for_each` must be one `${{ … }}` expression giving a list, with no text around it (that gives a string)"
        return [FieldError(field_loc, msg, "for_each_not_a_list")]
    if isinstance(template.whole, Literal) and not isinstance(template.whole.value, list):
        got = type(template.whole.value).__name__ if template.whole.value is not None else "null"
        return [
            FieldError(
                field_loc, f"`for_each` must give a list; this expression is always {got}", "for_each_not_a_list"
            )
        ]
    return []


def _check_kind(step: Step, registry: KindRegistry, step_loc: Loc) -> list[FieldError]:
    assert step.action is not None
    if step.action not in registry or registry.get(step.action).internal:
        known = ", ".join(kind.slug for kind in registry.all())
        return [
            FieldError((*step_loc, "action"), f"unknown action kind {step.action!r}; kinds are {known}", "unknown_kind")
        ]
    return literal_input_errors(registry.get(step.action).input_model, step.inputs, (*step_loc, "inputs"))


def literal_input_errors(model: type[BaseModel], inputs: dict[str, Any], inputs_loc: Loc) -> list[FieldError]:
    """Validate the literal part of ``inputs`` against a kind's input model.

    Values holding expressions are only known at run time, so errors at (or inside, or around) their paths are
    dropped; everything else (a wrong type, a missing required field, an unknown field) is reported."""
    expression_paths = [path for path, text in string_leaves(inputs, ()) if has_expression(text)]
    try:
        model.model_validate(inputs)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            error_path = tuple(error["loc"])
            if any(_overlaps(error_path, path) for path in expression_paths):
                continue
            errors.append(FieldError((*inputs_loc, *error_path), error["msg"], error["type"]))
        return errors
    return []


# Errors about which keys a container has: its keys are literal even when some of its values are expressions.
_KEY_ERRORS = (jsonschema_rs.ValidationErrorKind.Required, jsonschema_rs.ValidationErrorKind.AdditionalProperties)


def literal_params_errors(schema: dict[str, Any], params: dict[str, Any], params_loc: Loc) -> list[FieldError]:
    """Validate the literal part of a template step's ``inputs`` (the template's params) against its JSON schema.

    Like ``literal_input_errors``: errors at or inside a value holding an expression are dropped (known at run
    time); errors on a container around one are kept only when they are about its keys (missing, unexpected)."""
    expression_paths = [path for path, text in string_leaves(params, ()) if has_expression(text)]
    try:
        validator = jsonschema_rs.validator_for(schema, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return [FieldError(params_loc, f"the template's parameters schema cannot be used: {exc}", "json_schema")]
    errors = []
    for error in validator.iter_errors(params):
        error_path = tuple(error.instance_path)
        if any(error_path[: len(path)] == path for path in expression_paths):
            continue
        if any(_overlaps(error_path, path) for path in expression_paths) and not isinstance(error.kind, _KEY_ERRORS):
            continue
        errors.append(FieldError((*params_loc, *error_path), error.message, "params"))
    return errors


def _overlaps(a: Loc, b: Loc) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _check_triggers(spec: AutomationSpec, loc: Loc) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, trigger in enumerate(spec.triggers):
        if not isinstance(trigger, CronTrigger):
            continue
        trigger_loc = (*loc, "triggers", index)
        key = cron_trigger_key(trigger, index)
        if key in seen:
            errors.append(FieldError((*trigger_loc, "key"), f"duplicate trigger key {key!r}", "duplicate"))
        seen.add(key)
        five_fields = len(trigger.expression.split()) == 5 or trigger.expression.startswith("@")  # or @daily…
        if not five_fields or not croniter.is_valid(trigger.expression):
            msg = f"not a five-field cron expression (or @hourly, @daily…): {trigger.expression!r}"
            errors.append(FieldError((*trigger_loc, "expression"), msg, "cron"))
        try:
            ZoneInfo(trigger.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(FieldError((*trigger_loc, "timezone"), f"unknown timezone {trigger.timezone!r}", "timezone"))
        errors += params_errors(spec.parameters, trigger.params, (*trigger_loc, "params"))
    return errors


def _check_parameters_schema(spec: AutomationSpec, loc: Loc) -> list[FieldError]:
    try:
        jsonschema_rs.meta.validate(spec.parameters)
    except jsonschema_rs.ValidationError as exc:
        return [FieldError((*loc, "parameters"), f"not a valid JSON schema: {exc.message}", "json_schema")]
    except jsonschema_rs.ReferencingError as exc:
        return [FieldError((*loc, "parameters"), f"not a valid JSON schema: {exc}", "json_schema")]
    try:
        jsonschema_rs.validator_for(spec.parameters, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        msg = f"the schema cannot be used (remote $refs are not fetched): {exc}"
        return [FieldError((*loc, "parameters"), msg, "json_schema")]
    return []


def params_errors(schema: dict[str, Any], params: dict[str, Any], loc: Loc) -> list[FieldError]:
    """Run parameters against the automation's ``parameters`` schema. Remote ``$ref``s are never fetched."""
    try:
        validator = jsonschema_rs.validator_for(schema, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return [FieldError(loc, f"the automation's parameters schema cannot be used: {exc}", "json_schema")]
    return [
        FieldError((*loc, *error.instance_path), error.message, "params") for error in validator.iter_errors(params)
    ]


def raise_for_params(schema: dict[str, Any], params: dict[str, Any], loc: Loc = ("body", "params")) -> None:
    errors = params_errors(schema, params, loc)
    if errors:
        raise ValidationFailed(summary(errors), errors=errors)
