"""What expressions and functions see while a step runs (docs/user-guide/expressions.md)."""

from typing import Any

from automation.definitions.scope import expression_scope
from automation.models import Run, StepRun
from automation.store.graphs import graph_for
from automation.store.state import StepState
from entities.models import Entity, EntityType
from entities.outbox import entity_snapshot


def parent_scope(scope: str) -> str:
    return scope.rsplit("/", 1)[0] if "/" in scope else ""


def scope_chain(scope: str) -> list[str]:
    chain = [scope]
    while chain[-1]:
        chain.append(parent_scope(chain[-1]))
    return chain


def iteration_of(scope: str) -> tuple[str, int] | None:
    """("loop-step-id", index) for an iteration scope such as "a[1]/each[3]"."""
    if not scope:
        return None
    last = scope.rsplit("/", 1)[-1]
    loop_id, _, rest = last.rpartition("[")
    return loop_id, int(rest.rstrip("]"))


def load_entity(run: Run) -> Entity | None:
    if not run.entity_id:
        return None
    return Entity.objects.select_related("entity_type").filter(pk=run.entity_id).first()


def load_entities(runs: list[Run]) -> dict:
    """load_entity for many runs (a chunk's group: engine.chunks): entity id -> entity,
    as load_entity loads each; an entity not found is not in it. The entities in one
    query and their types in another, each type built once and shared by its entities
    (a batch's are all of one type: built per entity, its row and schema were a tenth
    of a chunk's CPU on SQLite, docs/performance.md)."""
    ids = {run.entity_id for run in runs if run.entity_id}
    if not ids:
        return {}
    entities = Entity.objects.in_bulk(ids)
    types = EntityType.objects.in_bulk({e.entity_type_id for e in entities.values()})
    found = {}
    for pk, entity in entities.items():
        if entity.entity_type_id in types:  # else deleted meanwhile: as a join finds it
            entity.entity_type = types[entity.entity_type_id]
            found[pk] = entity
    return found


def completed_outputs(run: Run, scope: str) -> dict[str, dict]:
    """`steps` of a step's scope: every completed step of its scope and the enclosing ones
    (an inner scope's step wins over an outer one of the same id)."""
    chain = scope_chain(scope)
    outputs = StepRun.objects.filter(
        run_id=run.pk, scope__in=chain, status=StepRun.Status.COMPLETED, parent__isnull=True
    ).values_list("step_id", "scope", "output")
    depth = {s: i for i, s in enumerate(chain)}
    steps: dict[str, dict] = {}
    for sid, _scope, output in sorted(outputs, key=lambda row: -depth[row[1]]):
        steps[sid] = {"output": output}
    return steps


def build_scope(run: Run, step_run: StepRun, entity: Entity | None, *,
                known_steps: dict | None = None) -> dict[str, Any]:
    """`known_steps`: what `steps` holds, when the step's predecessor knew it (the
    store hands it over with an inline claim); read from the step runs otherwise."""
    steps = known_steps
    if steps is None and not step_run.scope and step_run.step_id == graph_for(run.version_id).start:
        steps = {}  # the run's first step: nothing before it can have completed (no cycles)
    if steps is None:
        steps = completed_outputs(run, step_run.scope)
    known = {"result": step_run.input}
    iteration = iteration_of(step_run.scope)
    if iteration:
        loop = StepRun.objects.only("state").get(
            run_id=run.pk, step_id=iteration[0], scope=parent_scope(step_run.scope)
        )
        known["item"] = StepState.from_json(loop.state).items[iteration[1]]
        known["index"] = iteration[1]
    return expression_scope(
        input={} if run.input is None else run.input, parameters=run.parameters or {},
        event=run.trigger.get("event") or {}, steps=steps,
        entity=entity_snapshot(entity) if entity is not None else None, **known)
