"""Starting, cancelling and retrying runs."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.engine import settle
from automation.engine.flow import step_timeout_seconds
from automation.engine.graphs import graph_for
from automation.engine.queue import enqueue_step
from automation.exceptions import ProcessDisabledError, RunStateError
from automation.models import ApiProcess, ApprovalRequest, Run, StepRun
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
    """
    if not process.enabled and trigger.get("type") != "retry":
        raise ProcessDisabledError(f"The process '{process.slug}' is disabled.")
    version_id = version.pk if version is not None else process.current_version_id  # no fetch
    graph = graph_for(version_id)
    run = Run(process=process, version_id=version_id, trigger=trigger, input=input or {},
              parameters=parameters or {}, entity=entity, event=event, batch=batch,
              idempotency_key=idempotency_key, created_by=user, status=Run.Status.RUNNING,
              started_at=timezone.now())
    with transaction.atomic(savepoint=False):
        if idempotency_key:
            if not _insert_unless_taken(run):
                existing = Run.objects.filter(idempotency_key=idempotency_key).first()
                if existing is None:
                    raise IntegrityError(f"run with key {idempotency_key!r} was not written")
                return existing, False
        else:
            run.save(force_insert=True)
        first = graph.steps[graph.start]
        step_run = StepRun.objects.create(run=run, step_id=first.id, step_type=first.type,
                                          input=input or {})
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(first))
    return run, True


def _insert_unless_taken(run: Run) -> bool:
    """INSERT … ON CONFLICT DO NOTHING (SQLite: INSERT OR IGNORE); False if the row was
    not written because its idempotency key is taken."""
    from django.db import connections, router
    from django.db.models.constants import OnConflict
    from django.db.models.sql import InsertQuery

    using = router.db_for_write(Run)
    fields = [f for f in Run._meta.concrete_fields if not f.generated]
    query = InsertQuery(Run, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, [run])
    inserted = 0
    with connections[using].cursor() as cursor:
        for sql, params in query.get_compiler(using=using).as_sql():
            cursor.execute(sql, params)
            inserted += cursor.rowcount
    if inserted:
        run._state.adding, run._state.db = False, using
    return bool(inserted)


def run_cancel(*, run: Run) -> Run:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise RunStateError(f"The run is already {run.status}.")
        run.status, run.finished_at = Run.Status.CANCELLED, timezone.now()
        run.error = {"message": "Cancelled.", "step": None, "code": "cancelled"}
        run.save(update_fields=["status", "finished_at", "error"])
        settle.stop_active_steps(run, reason="cancel")
    return run


def run_retry(*, run: Run) -> Run:
    """Retry a failed run from its failed step; what the failure stopped resumes too."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status != Run.Status.FAILED:
            raise RunStateError(f"Only a failed run can be retried; this one is {run.status}.")
        graph = graph_for(run.version_id)
        failed = [s for s in StepRun.objects.filter(run=run, status=StepRun.Status.FAILED)
                  if not s.state.get("handled")]
        if not failed:
            raise RunStateError("The run has no failed step to retry.")
        for step_run in failed:
            _requeue(step_run, graph, log="retried by staff")
        for step_run in StepRun.objects.filter(run=run, status=StepRun.Status.CANCELLED,
                                               state__stopped_by="failure"):
            _restore(step_run, graph)
        run.status, run.error, run.finished_at = Run.Status.RUNNING, None, None
        run.save(update_fields=["status", "error", "finished_at"])
    return run


def _requeue(step_run: StepRun, graph, *, log: str) -> None:
    step_run.status, step_run.claim, step_run.not_before = StepRun.Status.PENDING, None, None
    step_run.lease_expires_at, step_run.error = None, None
    step_run.logs = [*step_run.logs, {"message": log}]
    step_run.save()
    enqueue_step(step_run.pk, timeout=step_timeout_seconds(graph.steps[step_run.step_id]))


def _restore(step_run: StepRun, graph) -> None:
    previous = step_run.state.pop("stopped_status", StepRun.Status.PENDING)
    step_run.state.pop("stopped_by", None)
    if previous == StepRun.Status.RUNNING:
        previous = StepRun.Status.PENDING
    step_run.status = previous
    step_run.claim = None
    step_run.save()
    if previous == StepRun.Status.PENDING:
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(graph.steps[step_run.step_id]))
    elif step_run.step_type == "human":
        ApprovalRequest.objects.filter(step_run=step_run).update(status=ApprovalRequest.Status.PENDING)
