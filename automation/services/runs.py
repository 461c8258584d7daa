"""Starting, cancelling and retrying runs. The rows are written by the run store."""

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from automation.definitions import Step
from automation.engine import traces
from automation.exceptions import ProcessDisabledError, RunStateError
from automation.models import ApiProcess, HeldStart, ProcessBreaker, Run, StepRun
from automation.services.breaker import ProcessPausedError, admit, resume
from automation.services.reruns import failed_step, run_rerun, stopped_by_failure
from automation.store import get_store, waiting
from automation.store.graphs import graph_for
from entities.models import Entity, EntityEvent


def run_start(
    *, process: ApiProcess, trigger: dict, input: Any = None, parameters: dict | None = None,
    entity: Entity | None = None, event: EntityEvent | None = None, batch=None,
    idempotency_key: str | None = None, user=None, version=None, breaker: bool = True,
) -> tuple[Run, bool]:
    """Start a run on the process's current version (or `version`).

    Returns (run, created). With an idempotency key, a second start with the same key
    returns the first run and starts nothing: the unique key decides (an INSERT that
    skips a conflict), so concurrent starts cannot both win, and no savepoint is needed
    inside a caller's transaction (the event dispatch), which saves two round trips.
    The run and its first step are written together or not at all.

    A process paused by its circuit breaker (services.breaker) holds the start instead
    and raises ProcessPausedError; `breaker=False` is for the held starts a person
    releases.
    """
    if breaker and process.enabled:
        admit(process=process, entity=entity, hold={
            "trigger": trigger, "input": input, "parameters": parameters, "entity": entity,
            "event": event, "idempotency_key": idempotency_key})
    run, step_run, first = _new_rows(
        process=process, trigger=trigger, input=input, parameters=parameters, entity=entity,
        event=event, batch=batch, idempotency_key=idempotency_key, user=user, version=version)
    if get_store().start(run, step_run, first):
        return run, True
    existing = Run.objects.filter(idempotency_key=idempotency_key).first()
    if existing is None:
        raise IntegrityError(f"run with key {idempotency_key!r} was not written")
    return existing, False


def run_start_statement(*, source: str, **start) -> tuple[str, tuple, Callable] | None:
    """run_start(**start) as CTEs that write only if the CTE `source` has a row (the
    event dispatch's claim, entities.outbox): `(ctes, params, started)`, see
    store.postgresql. None where the store cannot say everything run_start would (its
    features, a disabled process): run_start then does it the general way."""
    store = get_store()
    if not store.features.start_in_statement or not start["process"].enabled:
        return None
    try:
        admit(process=start["process"], entity=start.get("entity"))
    except ProcessPausedError:  # run_start holds it, the general way
        return None
    run, step_run, first = _new_rows(**start)
    return store.start_statement(run, step_run, first, source=source)


def _new_rows(*, process: ApiProcess, trigger: dict, input: Any = None,
              parameters: dict | None = None, entity: Entity | None = None,
              event: EntityEvent | None = None, batch=None, idempotency_key: str | None = None,
              user=None, version=None) -> tuple[Run, StepRun, Step]:
    """The run and its first step run, unsaved, and the first step's definition."""
    if not process.enabled and trigger.get("type") != "retry":
        raise ProcessDisabledError(f"The process '{process.slug}' is disabled.")
    version_id = version.pk if version is not None else process.current_version_id  # no fetch
    graph = graph_for(version_id)
    run = Run(process=process, version_id=version_id, trigger=trigger,
              input={} if input is None else input,
              parameters=parameters or {}, entity=entity, event=event, batch=batch,
              idempotency_key=idempotency_key, created_by=user,
              status=Run.Status.PENDING)  # running once a worker claims its first step
    first = graph.steps[graph.start]
    step_run = StepRun(run=run, step_id=first.id, step_type=first.type, input=run.input)
    return run, step_run, first


def run_cancel(*, run: Run) -> Run:
    run = get_store().cancel(run)
    traces.run_ended(run)
    return run


def run_retry(*, run: Run, version: str = "pinned", user=None) -> Run:
    """Retry a failed run from its failed step, on the pinned or the latest version: a
    re-run from that step (services.reruns), so the retry is a new attempt linked to the
    failed run, and what the failed run already did out there is not done again."""
    return run_rerun(run=run, from_step=failed_step(run), version=version, user=user,
                     reason="retry", restart=stopped_by_failure(run))


def process_resume(*, process: ApiProcess, held: str, user=None) -> dict:
    """Resume a process paused by its circuit breaker (services.breaker); `held` is
    "release" (start every held start now, on the current version) or "discard".
    Returns how many were released and discarded."""
    if held not in ("release", "discard"):
        raise RunStateError("Choose whether to release or discard the held runs.",
                            fields={"held": ["Use 'release' or 'discard'."]})
    process = ApiProcess.objects.select_related("current_version").get(pk=process.pk)  # fixed?
    breaker = resume(process=process)
    if user is not None:
        ProcessBreaker.objects.filter(pk=breaker.pk).update(resumed_by=user)
    held_starts = list(HeldStart.objects.filter(process=process, status=HeldStart.Status.HELD))
    if held == "discard":
        HeldStart.objects.filter(pk__in=[h.pk for h in held_starts]).update(
            status=HeldStart.Status.DISCARDED, decided_at=timezone.now())
        return {"released": 0, "discarded": len(held_starts)}
    for start in held_starts:
        run, _ = run_start(process=process, trigger={**start.trigger, "heldStart": start.pk},
                           input=start.input, parameters=start.parameters, entity=start.entity,
                           event=start.event, idempotency_key=start.idempotency_key, user=user,
                           breaker=False)
        HeldStart.objects.filter(pk=start.pk).update(
            status=HeldStart.Status.RELEASED, run=run, decided_at=timezone.now())
    return {"released": len(held_starts), "discarded": 0}


def run_wait(*, run_id, seconds: float) -> Run:
    """The run once it ended or waits for people (a human step), or as it is after
    `seconds` (at most store.waiting.MAX_WAIT_SECONDS). No database connection is held
    while it waits; start the run with `trigger["wait"]` set so its end is announced
    (docs/user-guide/triggers.md, "Synchronous replies")."""
    return waiting.wait_until_settled(run_id, seconds)
