"""Validating a definition: every problem of its steps, triggers and graph, keyed by
path; nothing is saved while any is left (services.processes)."""

from typing import Any
from zoneinfo import ZoneInfo

from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.flow import check_concurrency
from automation.definitions.graph import build_graph
from automation.definitions.priority import check_priority
from automation.definitions.steps import BRANCH_KEYS, STEP_TYPES, find_step_type
from automation.definitions.triggers import check_triggers

__all__ = ["MAX_STEPS", "STEP_KEYS", "STEP_TYPES", "validate_definition"]

MAX_STEPS = 500
STEP_KEYS = {"id", "name", "type", "function", "condition", "next", "config", "description"}


def validate_definition(
    definition: Any, *, function_exists, check_params=None, stored_exists=None
) -> dict[str, list[str]]:
    """Every problem of a definition, keyed by path; empty when it is valid.

    `function_exists(name) -> bool` is passed in so this module stays free of the registry;
    so is `check_params(name, params) -> {path: [messages]}`, what a function itself checks
    in a step's `config.params` (e.g. the expressions of http.request's response mapping),
    and `stored_exists(model, name) -> bool`, whether a stored thing a step names (an
    Agent) exists.
    """
    errors = DefinitionErrors()
    if not isinstance(definition, dict):
        errors.add("definition", "Expected a JSON object with steps and triggers.")
        return errors.fields
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        errors.add("steps", "A process needs at least one step.")
        return errors.fields
    if len(steps) > MAX_STEPS:
        errors.add("steps", f"At most {MAX_STEPS} steps are allowed; got {len(steps)}.")
        return errors.fields
    ids = _check_steps(steps, errors, function_exists)
    if check_params is not None:
        _check_function_params(steps, errors, check_params)
    if stored_exists is not None:
        for i, raw in enumerate(steps):
            kind = find_step_type(raw.get("type")) if isinstance(raw, dict) else None
            if kind is not None and isinstance(raw.get("config", {}), dict):
                kind.validate_references(raw, f"steps[{i}]", errors, stored_exists)
    check_triggers(definition.get("triggers", []), errors)
    _check_timezone(definition, errors)
    check_priority(definition.get("priority"), "priority", errors)
    check_concurrency(definition.get("concurrency"), errors)
    if errors:
        return errors.fields
    _check_graph(definition, ids, errors)
    return errors.fields


def _check_timezone(definition: dict, errors: DefinitionErrors) -> None:
    """The process's time zone (a `wait` step's `until` is read in it)."""
    if definition.get("timezone") is None:
        return
    name = definition["timezone"]
    try:
        if not isinstance(name, str) or not name:
            raise ValueError
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        errors.add("timezone", f"Unknown time zone {name!r}. Use an IANA name such as "
                               "Europe/Berlin or America/New_York.")


def _check_function_params(steps: list, errors: DefinitionErrors, check_params) -> None:
    for i, raw in enumerate(steps):
        kind = find_step_type(raw.get("type")) if isinstance(raw, dict) else None
        if kind is not None:
            kind.validate_params(raw, f"steps[{i}]", errors, check_params)


def _check_steps(steps: list, errors: DefinitionErrors, function_exists) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, raw in enumerate(steps):
        path = f"steps[{i}]"
        if not isinstance(raw, dict):
            errors.add(path, "Each step must be an object.")
            continue
        sid = raw.get("id")
        if not isinstance(sid, str) or not sid.strip() or len(sid) > 100:
            errors.add(f"{path}.id", "A step needs an id (text, at most 100 characters).")
        elif sid in ids:
            errors.add(f"{path}.id", f"Duplicate step id '{sid}' (also steps[{ids[sid]}]).")
        else:
            ids[sid] = i
        for key in sorted(set(raw) - STEP_KEYS):
            errors.add(f"{path}.{key}", f"Unknown key '{key}'.")
        _check_step_fields(raw, path, errors, function_exists)
    for i, raw in enumerate(steps):
        if isinstance(raw, dict):
            _check_references(raw, f"steps[{i}]", ids, errors)
    return ids


def _check_step_fields(raw: dict, path: str, errors: DefinitionErrors, function_exists) -> None:
    """The checks every step gets; its type adds its own (automation.definitions.steps)."""
    kind, config = find_step_type(raw.get("type")), raw.get("config", {})
    if kind is None:
        errors.add(f"{path}.type", f"Unknown step type {raw.get('type')!r}; "
                                   f"use one of {', '.join(sorted(STEP_TYPES))}.")
    if not isinstance(config, dict):
        errors.add(f"{path}.config", "config must be an object.")
        return
    nxt = raw.get("next")
    if nxt is not None and not isinstance(nxt, str) and not (
        isinstance(nxt, list) and all(isinstance(n, str) for n in nxt)
    ):
        errors.add(f"{path}.next", "next must be a step id or a list of step ids.")
    if kind is not None:
        kind.validate(raw, path, errors, function_exists=function_exists)
    if "input" in config:
        mapping = config["input"]
        if not isinstance(mapping, dict):
            errors.add(f"{path}.config.input", "input must map names to expressions.")
        else:
            for key, expr in mapping.items():
                check_expression(expr, f"{path}.config.input.{key}", errors)


def _check_references(raw: dict, path: str, ids: dict, errors: DefinitionErrors) -> None:
    nxt = raw.get("next")
    targets = [nxt] if isinstance(nxt, str) else (nxt if isinstance(nxt, list) else [])
    for target in targets:
        if isinstance(target, str) and target not in ids:
            errors.add(f"{path}.next", f"unknown step '{target}'")
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    for key in BRANCH_KEYS:
        target = config.get(key)
        if target is not None and (not isinstance(target, str) or target not in ids):
            errors.add(f"{path}.config.{key}", f"unknown step '{target}'")


def _check_graph(definition: dict, ids: dict[str, int], errors: DefinitionErrors) -> None:
    graph = build_graph(definition)
    reachable = graph.reach[graph.start] | {graph.start}
    for sid, index in ids.items():
        if sid not in reachable:
            errors.add(f"steps[{index}]", f"Step '{sid}' is unreachable from the first step.")
    for sid in graph.steps:
        if sid in graph.reach[sid]:
            errors.add(f"steps[{ids[sid]}].next", f"Step '{sid}' is part of a cycle; "
                                                  "only a loop body may lead back to its loop.")
