"""Starting, cancelling and retrying runs."""

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from automation.engine import one_statement, settle
from automation.engine.flow import step_timeout_seconds
from automation.engine.graphs import graph_for
from automation.engine.queue import enqueue_step
from automation.exceptions import ProcessDisabledError, RunStateError
from automation.models import ApiProcess, ApprovalRequest, Run, StepRun
from entities.db import prepared
from entities.db.compiled import CompiledInsert, insert_from
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
    using = router.db_for_write(Run)
    one_statement = connections[using].vendor == "postgresql"
    with nullcontext() if one_statement else transaction.atomic(using=using, savepoint=False):
        written = (_insert_together(run, step_run, using) if one_statement
                   else _insert_in_turn(run, step_run, using))
        if not written:
            existing = Run.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise IntegrityError(f"run with key {idempotency_key!r} was not written")
            return existing, False
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(first))
    return run, True


def run_start_statement(*, source: str, **start) -> tuple[str, tuple, Callable] | None:
    """run_start(**start) as CTEs that write only if the CTE `source` has a row (the
    event dispatch's claim, entities.outbox): `(ctes, params, started)`. The CTE
    `written_row` holds the first step run's id, none if the idempotency key was taken;
    the statement hands it to `started`, which rings for the step once the statement has
    committed. The caller runs the statement on its own, outside any transaction. None
    where the statement cannot say everything run_start would (not PostgreSQL, a
    disabled process): run_start then does it the general way."""
    if not one_statement.enabled() or not start["process"].enabled:
        return None
    run, step_run, first = _new_rows(**start)
    using = router.db_for_write(Run)
    ctes, params = _start_ctes(run, step_run, using, source=source)
    ctes += ", written_row AS (SELECT id FROM first_step)"

    def started(step_run_pk: int | None) -> None:
        if step_run_pk is None:  # the key was taken: the run exists, and was rung for
            return
        _written(run, step_run, step_run_pk, using)
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(first))

    return ctes, params, started


def _new_rows(*, process: ApiProcess, trigger: dict, input: Any = None,
              parameters: dict | None = None, entity: Entity | None = None,
              event: EntityEvent | None = None, batch=None, idempotency_key: str | None = None,
              user=None, version=None) -> tuple[Run, StepRun, Any]:
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


def _insert_in_turn(run: Run, step_run: StepRun, using: str) -> bool:
    """The run (INSERT … ON CONFLICT DO NOTHING when it has a key; SQLite: INSERT OR
    IGNORE), then its first step. False if the key was taken and nothing was written."""
    if run.idempotency_key:
        sql, params = _run_insert(run).sql_params(run, using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            inserted = cursor.rowcount
        if not inserted:
            return False
        run._state.adding, run._state.db = False, using
    else:
        run.save(force_insert=True, using=using)
    step_run.save(force_insert=True, using=using)
    return True


def _insert_together(run: Run, step_run: StepRun, using: str) -> bool:
    """PostgreSQL: the run and its first step in one statement (atomic on its own, one
    round trip instead of four at the top level), the step only if the run was written."""
    ctes, params = _start_ctes(run, step_run, using)
    with connections[using].cursor() as cursor:
        prepared.execute(cursor, f"WITH {ctes} SELECT id FROM first_step", params,  # noqa: S608
                         using=using)
        row = cursor.fetchone()
    if row is None:
        return False
    _written(run, step_run, row[0], using)
    return True


def _start_ctes(run: Run, step_run: StepRun, using: str, *, source: str | None = None
                ) -> tuple[str, tuple]:
    """`run_row AS (INSERT run … [FROM source] ON CONFLICT DO NOTHING RETURNING id),
    first_step AS (INSERT step … FROM run_row RETURNING id)`."""
    qn = connections[using].ops.quote_name
    run_sql, run_params = insert_from(run, source, using, insert=_run_insert(run))
    step_sql, step_params = insert_from(step_run, "run_row", using)
    # only Django's compiled SQL and quoted names go in; every value is a parameter
    ctes = (f"run_row AS ({run_sql} RETURNING {qn(Run._meta.pk.column)}), "
            f"first_step AS ({step_sql} RETURNING {qn(StepRun._meta.pk.column)})")
    return ctes, (*run_params, *step_params)


def _written(run: Run, step_run: StepRun, step_run_pk: int, using: str) -> None:
    for obj in (run, step_run):
        obj._state.adding, obj._state.db = False, using
    step_run.pk = step_run_pk


_RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.generated]  # its pk is a UUID
_RUN_INSERTS = {key: CompiledInsert(Run, fields=_RUN_FIELDS, on_conflict=conflict)
                for key, conflict in ((True, OnConflict.IGNORE), (False, None))}


def _run_insert(run: Run) -> CompiledInsert:
    """A run with an idempotency key skips a conflict (INSERT … ON CONFLICT DO NOTHING;
    SQLite: INSERT OR IGNORE) and so writes nothing when the key is taken."""
    return _RUN_INSERTS[bool(run.idempotency_key)]


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
