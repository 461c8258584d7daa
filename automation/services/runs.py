"""Starting, cancelling and retrying runs. The rows are written by the run store."""

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from automation.definitions import Step
from automation.exceptions import ProcessDisabledError
from automation.models import ApiProcess, Run, StepRun
from automation.store import get_store, waiting
from automation.store.graphs import graph_for
from entities.models import Entity, EntityEvent


def run_start(
    *, process: ApiProcess, trigger: dict, input: Any = None, parameters: dict | None = None,
    entity: Entity | None = None, event: EntityEvent | None = None, batch=None,
    idempotency_key: str | None = None, user=None, version=None,
) -> tuple[Run, bool]:
    """Start a run on the process's current version (or `version`).

    Returns (run, created). With an idempotency key, a second start with the same key
    returns the first run and starts nothing: the unique key decides (an INSERT that
    skips a conflict), so concurrent starts cannot both win, and no savepoint is needed
    inside a caller's transaction (the event dispatch), which saves two round trips.
    The run and its first step are written together or not at all.
    """
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
    run = Run(process=process, version_id=version_id, trigger=trigger, input=input or {},
              parameters=parameters or {}, entity=entity, event=event, batch=batch,
              idempotency_key=idempotency_key, created_by=user, status=Run.Status.RUNNING,
              started_at=timezone.now())
    first = graph.steps[graph.start]
    step_run = StepRun(run=run, step_id=first.id, step_type=first.type, input=input or {})
    return run, step_run, first


def run_cancel(*, run: Run) -> Run:
    return get_store().cancel(run)


def run_retry(*, run: Run) -> Run:
    """Retry a failed run from its failed step; what the failure stopped resumes too."""
    return get_store().retry(run)


def run_wait(*, run_id, seconds: float) -> Run:
    """The run once it ended or waits for people (a human step), or as it is after
    `seconds` (at most store.waiting.MAX_WAIT_SECONDS). No database connection is held
    while it waits; start the run with `trigger["wait"]` set so its end is announced
    (docs/user-guide/triggers.md, "Synchronous replies")."""
    return waiting.wait_until_settled(run_id, seconds)
