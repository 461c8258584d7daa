"""What would a process do to an entity? A preview that starts nothing.

The graph is walked from the first step with a scope like the engine's (the entity's
snapshot, empty input and parameters). Conditions whose names are all known are
evaluated for real; a function, approval, agent or loop step's output is only known
once it runs, so a condition reading `result` (or `steps`, `item`, `index`) after one is
"unknown" and both of its branches are marked as maybe running. Used by the API
(POST /api/entities/{id}/process with dryRun) and the admin's "Process entity" modal.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any

from automation.definitions import Graph, Step
from automation.models import ApiProcess
from automation.store.graphs import graph_for
from entities.exceptions import ExpressionError
from entities.expressions import evaluate, evaluate_bool, expression_variables
from entities.models import Entity
from entities.outbox import entity_snapshot

UNKNOWN_AFTER = {"function", "human", "agent", "loop"}


@dataclass(frozen=True)
class Visit:
    step_id: str
    certain: bool
    result: Any
    unknown: frozenset  # scope names whose value is not known on this path


def dry_run(*, process: ApiProcess, entity: Entity) -> dict:
    """{process, version, entity, applicable, enabled, steps, skipped, unmetRequirements}.

    Each step entry: {id, type, name, wouldRun: "yes" | "maybe", ...}; conditions add
    {condition, value: true | false | null, evaluation: "true" | "false" | "unknown" |
    "error", error?}; human steps add approvers; loops add items (count or null).
    """
    snapshot = entity_snapshot(entity)
    summary = {
        "process": process.slug, "version": None,
        "entity": {"id": snapshot["id"], "type": snapshot["type"],
                   "reference": snapshot["reference"], "status": snapshot["status"]},
        "applicable": process.entity_type_id in (None, entity.entity_type_id),
        "enabled": process.enabled, "steps": [], "skipped": [],
        "unmetRequirements": list(entity.unmet_requirements or []),
    }
    if process.current_version is None:
        return summary
    summary["version"] = process.current_version.number
    graph = graph_for(process.current_version_id)
    entries = _walk(graph, _scope(snapshot))
    summary["steps"] = list(entries.values())
    summary["skipped"] = [sid for sid in graph.steps if sid not in entries]
    return summary


def _scope(snapshot: dict) -> dict:
    scope = {"input": {}, "parameters": {}, "event": {}, "entity": snapshot, "steps": {}}
    if snapshot["type"] == "case":
        scope["case"] = {"id": snapshot["id"], **(snapshot["data"] or {})}
    return scope


def _walk(graph: Graph, scope: dict) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    queue = deque([Visit(graph.start, True, {}, frozenset())])
    while queue:
        visit = queue.popleft()
        step = graph.steps[visit.step_id]
        known = entries.get(step.id)
        if known is not None and (known["wouldRun"] == "yes" or not visit.certain):
            continue  # already seen with at least this certainty
        entry = {"id": step.id, "type": step.type, "name": step.raw.get("name") or step.id,
                 "wouldRun": "yes" if visit.certain else "maybe"}
        unknown = visit.unknown | ({"result"} if graph.is_join(step.id) else set())
        result = None if "result" in unknown else visit.result
        targets = _describe(step, entry, {**scope, "result": result}, unknown)
        entries[step.id] = {**(known or {}), **entry}
        after = unknown | ({"result", "steps"} if step.type in UNKNOWN_AFTER else set())
        if step.type == "loop":
            after |= {"item", "index"}
        for target, certain in targets:
            if target in graph.steps and not _is_loop_back(graph, step.id, target):
                queue.append(Visit(target, visit.certain and certain, result, frozenset(after)))
    return entries


def _is_loop_back(graph: Graph, source: str, target: str) -> bool:
    return target in graph.loop_bodies and source in graph.loop_bodies[target]


def _describe(step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[tuple[str, bool]]:
    """Fill in what is known about `step`; return (target, certain) pairs to go on to."""
    config = step.config
    maybe = [(config[k], False) for k in ("onError", "onTimeout")
             if isinstance(config.get(k), str)]
    if step.type == "condition":
        return _condition(step, entry, scope, unknown)
    if step.type == "human":
        entry["approvers"] = config.get("approvers") or config.get("reviewers") or []
    if step.type == "function":
        entry["function"] = step.raw.get("function")
    if step.type == "loop":
        return _loop(step, entry, scope, unknown) + maybe
    return [(t, True) for t in step.next] + maybe


def _condition(step: Step, entry: dict, scope: dict, unknown: frozenset):
    source = step.raw["condition"]
    entry.update({"condition": source, "value": None})
    orelse = [step.config["else"]] if step.config.get("else") else []
    try:
        if expression_variables(source) & unknown:
            entry["evaluation"] = "unknown"
            return [(t, False) for t in [*step.next, *orelse]]
        value = evaluate_bool(source, scope)
    except ExpressionError as exc:
        entry.update({"evaluation": "error", "error": exc.message})
        return [(t, False) for t in [*step.next, *orelse]]
    entry.update({"value": value, "evaluation": "true" if value else "false"})
    return [(t, True) for t in (step.next if value else orelse)]


def _loop(step: Step, entry: dict, scope: dict, unknown: frozenset):
    source = step.config.get("items", "")
    then = [step.config["then"]] if isinstance(step.config.get("then"), str) else []
    entry["items"] = None
    try:
        if not expression_variables(source) & unknown:
            items = evaluate(source, scope)
            entry["items"] = len(items) if isinstance(items, list) else None
    except ExpressionError as exc:
        entry["error"] = exc.message
    body_certain = bool(entry["items"])
    if entry["items"] == 0:
        return [(t, True) for t in then]
    return [(t, body_certain) for t in step.next] + [(t, True) for t in then]
