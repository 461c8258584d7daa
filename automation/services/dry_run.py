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

from automation.definitions import Graph, step_type
from automation.definitions.scope import expression_scope
from automation.models import ApiProcess
from automation.store.graphs import graph_for
from entities.models import Entity
from entities.outbox import entity_snapshot


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
    entries = _walk(graph, expression_scope(entity=snapshot))
    summary["steps"] = list(entries.values())
    summary["skipped"] = [sid for sid in graph.steps if sid not in entries]
    return summary


def _walk(graph: Graph, scope: dict) -> dict[str, dict]:
    """Breadth first from the first step; each step's type fills in its entry and says
    where to go on (automation.definitions.steps: StepType.dry_run)."""
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
        kind = step_type(step.type)
        targets = kind.dry_run(step, entry, {**scope, "result": result}, unknown)
        entries[step.id] = {**(known or {}), **entry}
        after = unknown | kind.hides_after
        for target, certain in targets:
            if target in graph.steps and not _is_loop_back(graph, step.id, target):
                queue.append(Visit(target, visit.certain and certain, result, frozenset(after)))
    return entries


def _is_loop_back(graph: Graph, source: str, target: str) -> bool:
    return target in graph.loop_bodies and source in graph.loop_bodies[target]
