"""What would a process do to an entity? A preview that starts nothing.

The graph is walked from the first step with a scope like the engine's (the entity's
snapshot, empty input and parameters). Conditions whose names are all known are
evaluated for real; a function, approval, agent or loop step's output is only known
once it runs, so a condition reading `result` (or `steps`, `item`, `index`) after one is
"unknown" and both of its branches are marked as maybe running. Used by the API
(POST /api/entities/{id}/process with dryRun) and the admin's "Process entity" modal;
explain asks it for the first steps of every process a change would start.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any

from automation.definitions import Graph, step_type
from automation.definitions.scope import expression_scope
from automation.functions.templating import evaluate_tree
from automation.models import ApiProcess
from automation.store.graphs import graph_for
from entities.exceptions import ExpressionError
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
    "error", error?}; human steps add approvers; loops add items (count or null); wait and
    waitForEvent steps add waitsFor (what they wait for, in words).
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


def first_steps(version_id: int, scope: dict, *, limit: int) -> list[dict]:
    """The first `limit` steps a run of the version would run, in the order the dry run
    walks them, for a run whose input is `scope["input"]` (explain,
    automation.services.explain). A function step whose input mapping can be rendered
    (what it reads is known before the run) carries `input`, rendered; else the reason."""
    graph = graph_for(version_id)
    results: dict[str, Any] = {}
    entries = _walk(graph, scope, first_result=scope["input"], results=results)
    steps = []
    for entry in list(entries.values())[:limit]:
        step = graph.steps[entry["id"]]
        if "input" in step.config and entry["id"] in results:
            try:
                entry["input"] = evaluate_tree(step.config["input"],
                                               {**scope, "result": results[entry["id"]]})
            except ExpressionError as exc:
                entry["inputError"] = exc.message
        elif entry["id"] in results:
            entry["input"] = results[entry["id"]]
        steps.append(entry)
    return steps


def _walk(graph: Graph, scope: dict, *, first_result: Any = None,
          results: dict | None = None) -> dict[str, dict]:
    """Breadth first from the first step; each step's type fills in its entry and says
    where to go on (automation.definitions.steps: StepType.dry_run). `results` receives
    the `result` each step would see, where that is known."""
    entries: dict[str, dict] = {}
    queue = deque([Visit(graph.start, True, {} if first_result is None else first_result,
                         frozenset())])
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
        if results is not None and "result" not in unknown and visit.certain:
            results.setdefault(step.id, result)
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
