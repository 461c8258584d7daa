"""Starting the child run of a `process` step (docs/user-guide/sub-processes.md).

The engine calls `start_child` (registered in automation.apps) while the parent step runs
on a worker; the run store then records the step as waiting, and the child's end finishes
it (store.recording.resume_parent, a run-end hook).

The child starts through `run_start`, so it is written with its first step in one
transaction like any run, but with the circuit breaker skipped on purpose: the parent run
was admitted already, and a held child start would leave the parent waiting on a person
who releases it without knowing anything waits for it. A disabled child process fails
the step (`process_disabled`).
"""

import uuid
from typing import Any

from django.db.models import Q

from automation.definitions.steps.process import MAX_DEPTH, process_reference
from automation.exceptions import StepFailedError
from automation.models import ApiProcess, ProcessVersion, Run, StepRun
from automation.services.runs import run_start
from automation.store.graphs import graph_for
from automation.store.subprocesses import describe
from entities.models import Entity


def find_process(reference: str) -> ApiProcess | None:
    """A process by its slug, or by its id when the reference is a number."""
    lookup = Q(slug=reference)
    if reference.isdigit():
        lookup |= Q(pk=int(reference))
    return ApiProcess.objects.filter(lookup).select_related("current_version").first()


def depth_of(run: Run) -> int:
    """How many parents a run has (0: started by anything but a `process` step)."""
    trigger = run.trigger or {}
    return int(trigger.get("depth", 0)) if trigger.get("type") == "process" else 0


def pick_version(process: ApiProcess, policy: str, parent: Run) -> ProcessVersion:
    """"latest": the child's current version. "pinned": the child's version that was
    current when the parent's version was saved (its newest one saved no later)."""
    if policy == "pinned":
        saved = ProcessVersion.objects.filter(pk=parent.version_id).values_list(
            "created_at", flat=True).first()
        pinned = process.versions.filter(created_at__lte=saved).order_by("-number").first()
        if pinned is not None:
            return pinned
    if process.current_version is None:
        raise StepFailedError(f"The process '{process.slug}' has no version to run.",
                              code="subprocess_unavailable", retryable=False)
    return process.current_version


def start_child(parent_step_run: StepRun, *, key: str, input: Any, entity: Any) -> dict:
    """Start the child run for `parent_step_run` (claimed, with its run loaded) once per
    attempt: the attempt's idempotency key makes a repeat after a lost worker return the
    run it started. `entity`: the entity id the step's `config.entity` gave, or None
    for the parent's entity."""
    parent = parent_step_run.run
    step = graph_for(parent.version_id).steps[parent_step_run.step_id]
    config = step.config
    reference = process_reference(config) or ""
    process = find_process(reference)
    if process is None:
        raise StepFailedError(f"Unknown process '{reference}'.", code="subprocess_unavailable",
                              retryable=False)
    depth = depth_of(parent) + 1
    if depth > MAX_DEPTH:
        raise StepFailedError(
            f"Sub-processes nest deeper than {MAX_DEPTH} levels (a process that calls itself "
            f"through others?); '{process.slug}' was not started.",
            code="subprocess_too_deep", retryable=False)
    version = pick_version(process, config.get("version", "pinned"), parent)
    child_entity = _entity(parent, entity, process)
    attempt = key.rsplit(":", 1)[-1]
    run, _ = run_start(
        process=process, version=version, input=input, entity=child_entity,
        trigger={"type": "process", "parentExecutionId": str(parent.pk),
                 "parentStep": step.id, "depth": depth},
        idempotency_key=f"subprocess:{parent_step_run.pk}:{attempt}",
        breaker=False, parent_step_run=parent_step_run)
    run = Run.objects.select_related("process", "version").get(pk=run.pk)
    return describe(run)


def _entity(parent: Run, entity: Any, process: ApiProcess) -> Entity | None:
    if entity is None:
        found = Entity.objects.filter(pk=parent.entity_id).first() if parent.entity_id else None
    else:
        found = Entity.objects.filter(pk=str(entity)).first() if _uuid_like(entity) else None
        if found is None:
            raise StepFailedError(f"config.entity gave {entity!r}, which is no entity's id.",
                                  code="subprocess_entity", retryable=False)
    wanted = process.entity_type_id
    if found is not None and wanted and found.entity_type_id != wanted:
        raise StepFailedError(
            f"The process '{process.slug}' runs on another entity type than this entity's.",
            code="subprocess_entity", retryable=False)
    return found


def _uuid_like(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
