"""Starting, cancelling and retrying runs. The rows are written by the run store."""

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from automation.definitions import Graph, Step
from automation.definitions.flow import Concurrency
from automation.definitions.scope import event_scope, expression_scope
from automation.engine import traces
from automation.exceptions import ProcessDisabledError, RunStateError
from automation.models import (
    ApiProcess,
    HeldStart,
    Priority,
    ProcessBreaker,
    ProcessTrigger,
    Run,
    StepRun,
)
from automation.services.breaker import ProcessPausedError, admit, resume
from automation.services.reruns import failed_step, run_rerun, stopped_by_failure
from automation.store import get_store, waiting
from automation.store.graphs import concurrency_for, graph_for
from entities.exceptions import EntitiesError
from entities.expressions import evaluate
from entities.models import Entity, EntityEvent
from entities.outbox import entity_snapshot

logger = logging.getLogger(__name__)


def run_start(
    *, process: ApiProcess, trigger: dict, input: Any = None, parameters: dict | None = None,
    entity: Entity | None = None, event: EntityEvent | None = None, batch=None,
    idempotency_key: str | None = None, user=None, version=None, breaker: bool = True,
    parent_step_run: StepRun | None = None, priority: str | None = None,
) -> tuple[Run, bool]:
    """Start a run on the process's current version (or `version`).

    Returns (run, created). With an idempotency key, a second start with the same key
    returns the first run and starts nothing: the unique key decides (an INSERT that
    skips a conflict), so concurrent starts cannot both win, and no savepoint is needed
    inside a caller's transaction (the event dispatch), which saves two round trips.
    The run and its first step are written together or not at all.

    A process paused by its circuit breaker (services.breaker) holds the start instead
    and raises ProcessPausedError; `breaker=False` is for the held starts a person
    releases. `parent_step_run`: the `process` step a sub-process run is started for
    (services.subprocesses).

    `priority` (high / normal / low) overrides the trigger's and the process's
    (run_priority).
    """
    priority_check(priority)
    if breaker and process.enabled:
        admit(process=process, entity=entity, hold={
            "trigger": trigger, "input": input, "parameters": parameters, "entity": entity,
            "event": event, "idempotency_key": idempotency_key})
    run, step_run, first = _new_rows(
        process=process, trigger=trigger, input=input, parameters=parameters, entity=entity,
        event=event, batch=batch, idempotency_key=idempotency_key, user=user, version=version,
        parent_step_run=parent_step_run, priority=priority)
    return run_start_prepared(run, step_run, first)


def run_start_prepare(**start) -> tuple[Run, StepRun, Step] | None:
    """run_start(**start)'s admission and its rows, unsaved, ahead of the transaction
    that writes them (run_start_prepared): the event dispatch asks this before it takes
    SQLite's one write lock, so the lock is held for the writes alone (entities.outbox,
    docs/performance.md "First step on SQLite"). None where run_start must decide (a
    disabled process, a start the circuit breaker holds)."""
    if not start["process"].enabled:
        return None
    try:
        admit(process=start["process"], entity=start.get("entity"))
    except ProcessPausedError:  # run_start holds it, the general way
        return None
    return _new_rows(**start)


def run_start_prepared(run: Run, step_run: StepRun, first: Step) -> tuple[Run, bool]:
    """Write what run_start_prepare (or run_start) made: (run, created) as run_start."""
    if get_store().start(run, step_run, first):
        return run, True
    existing = Run.objects.filter(idempotency_key=run.idempotency_key).first()
    if existing is None:
        raise IntegrityError(f"run with key {run.idempotency_key!r} was not written")
    return existing, False


def run_start_statement(*, source: str, **start) -> tuple[str, tuple, Callable] | None:
    """run_start(**start) as CTEs that write only if the CTE `source` has a row (the
    event dispatch's claim, entities.outbox): `(ctes, params, started)`, see
    store.postgresql. None where the store cannot say everything run_start would (its
    features, a disabled process): run_start then does it the general way."""
    store = get_store()
    if not store.features.start_in_statement or not start["process"].enabled:
        return None
    if concurrency_for(start["version"].pk if start.get("version") else
                       start["process"].current_version_id) is not None:
        return None  # a gated start counts the running runs first (store.gates)
    rows = run_start_prepare(**start)
    if rows is None:
        return None
    return store.start_statement(*rows, source=source)


def _new_rows(*, process: ApiProcess, trigger: dict, input: Any = None,
              parameters: dict | None = None, entity: Entity | None = None,
              event: EntityEvent | None = None, batch=None, idempotency_key: str | None = None,
              user=None, version=None, parent_step_run: StepRun | None = None,
              priority: str | None = None,
              ) -> tuple[Run, StepRun, Step]:
    """The run and its first step run, unsaved, and the first step's definition."""
    if not process.enabled and trigger.get("type") != "retry":
        raise ProcessDisabledError(f"The process '{process.slug}' is disabled.")
    version_id = version.pk if version is not None else process.current_version_id  # no fetch
    graph = graph_for(version_id)
    run = _RUN_ROW.new(
        process_id=process.pk, version_id=version_id, trigger=trigger,
        input={} if input is None else input, parameters=parameters or {},
        entity_id=entity.pk if entity is not None else None,
        event_id=event.pk if event is not None else None,
        batch_id=batch.pk if batch is not None else None,
        idempotency_key=idempotency_key, created_by_id=user.pk if user is not None else None,
        parent_run_id=parent_step_run.run_id if parent_step_run else None,
        parent_step_run_id=parent_step_run.pk if parent_step_run else None,
        priority=run_priority(graph, trigger, priority),
        status=Run.Status.PENDING)  # running once a worker claims its first step
    # the objects the caller has, as Run(process=…, entity=…) would hold them: what
    # reads them later (the concurrency key, the dispatch) finds them without a query
    for name, related in (("process", process), ("entity", entity), ("event", event),
                          ("batch", batch), ("created_by", user),
                          ("parent_step_run", parent_step_run)):
        if related is not None:
            setattr(run, name, related)
    rule = concurrency_for(version_id)
    if rule is not None:
        run.concurrency_key = concurrency_key(rule, run)
    first = graph.steps[graph.start]
    step_run = _STEP_ROW.new(run_id=run.pk, step_id=first.id, step_type=first.type,
                             input=run.input, priority=run.priority)
    step_run.run = run
    return run, step_run, first


class _NewRow:
    """`model(**values)` for a new row, built from its values in field order as Django
    builds the rows it reads (`Model(*values)`): every field not given takes its
    default as `Model.__init__` would (a callable default is called for each row), with
    the per-field keyword work of `Model.__init__` left out. Values are given by
    attname (`process_id`); the caller sets related objects it holds afterwards. Every
    trigger builds two (docs/performance.md, "The API trigger's rows built in field
    order")."""

    def __init__(self, model: type):
        self.model = model
        self._plan: list[tuple[str, Callable | None, Any]] | None = None

    def new(self, **values):
        plan = self._plan
        if plan is None:  # the models are ready once a row is built
            plan = [
                (field.attname,
                 field.default if field.has_default() and callable(field.default) else None,
                 None if field.has_default() and callable(field.default) else field.get_default())
                for field in self.model._meta.concrete_fields]
            # the names first: a thread that finds the plan finds them (not built per row)
            self._attnames = frozenset(attname for attname, _, _ in plan)
            self._plan = plan
        unknown = values.keys() - self._attnames
        if unknown:
            raise TypeError(f"{self.model.__name__} has no field {', '.join(sorted(unknown))}")
        return self.model(*[values[attname] if attname in values
                            else (default() if default is not None else constant)
                            for attname, default, constant in plan])


_RUN_ROW, _STEP_ROW = _NewRow(Run), _NewRow(StepRun)


def run_priority(graph: Graph, trigger: dict, explicit: str | None = None) -> str:
    """A run's priority (docs/user-guide/priority.md): the one asked for (a batch's, an
    API start's), else its trigger's, else its process's, else normal. A trigger is
    found by its position in the version's definition (a manual start through the API
    names none: the first manual trigger's); only a definition whose triggers set a
    priority costs a look-up."""
    if explicit:
        return explicit
    process_level, per_trigger = graph.priorities
    if any(priority for _, priority in per_trigger):
        position = trigger.get("position")
        if position is None and trigger.get("triggerId"):
            position = ProcessTrigger.objects.filter(pk=trigger["triggerId"]).values_list(
                "position", flat=True).first()
        elif position is None and trigger.get("type") == "manual":
            position = next((i for i, (kind, _) in enumerate(per_trigger) if kind == "manual"),
                            None)
        if position is not None and position < len(per_trigger) and per_trigger[position][1]:
            return per_trigger[position][1]
    return process_level or Priority.NORMAL


def priority_check(priority: str | None) -> None:
    """A priority asked for (an API start, a batch): blank or one of the levels."""
    if priority and priority not in Priority.values:
        raise ValidationError({"priority": [
            f"Use one of {', '.join(Priority.values)}; got {priority!r}."]})


def concurrency_key(rule: Concurrency, run: Run) -> str:
    """The key a run is counted under: the rule's expression over the run's input, entity
    and event, else the entity's id ("" without an entity: such runs share one key). A
    key that cannot be evaluated falls back to that default (logged), so a start is
    never lost to it."""
    default = str(run.entity_id) if run.entity_id else ""
    if not rule.key:
        return default
    scope = expression_scope(
        input=run.input, parameters=run.parameters,
        event=event_scope(run.event) if run.event is not None else None,
        entity=entity_snapshot(run.entity) if run.entity is not None else None)
    try:
        value = evaluate(rule.key, scope)
    except EntitiesError as exc:
        logger.warning("concurrency key of %s failed, using the default: %s",
                       run.process_id, exc)
        return default
    return str(value)[:300]


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
    """Resume a paused process (services.breaker: by its circuit breaker or a person):
    its running runs continue from the steps held at their boundary (store.pauses), and
    `held` is "release" (start every held start now, on the current version) or
    "discard". Returns how many starts were released and discarded, and how many held
    steps continued."""
    if held not in ("release", "discard"):
        raise RunStateError("Choose whether to release or discard the held runs.",
                            fields={"held": ["Use 'release' or 'discard'."]})
    process = ApiProcess.objects.select_related("current_version").get(pk=process.pk)  # fixed?
    breaker = resume(process=process)
    if user is not None:
        ProcessBreaker.objects.filter(pk=breaker.pk).update(resumed_by=user)
    continued = get_store().continue_held([process.pk])
    held_starts = list(HeldStart.objects.filter(process=process, status=HeldStart.Status.HELD))
    if held == "discard":
        HeldStart.objects.filter(pk__in=[h.pk for h in held_starts]).update(
            status=HeldStart.Status.DISCARDED, decided_at=timezone.now())
        return {"released": 0, "discarded": len(held_starts), "continued": continued}
    for start in held_starts:
        run, _ = run_start(process=process, trigger={**start.trigger, "heldStart": start.pk},
                           input=start.input, parameters=start.parameters, entity=start.entity,
                           event=start.event, idempotency_key=start.idempotency_key, user=user,
                           breaker=False)
        HeldStart.objects.filter(pk=start.pk).update(
            status=HeldStart.Status.RELEASED, run=run, decided_at=timezone.now())
    return {"released": len(held_starts), "discarded": 0, "continued": continued}


def processes_resume_all(*, held: str, user=None) -> dict:
    """process_resume for every paused process; the sums, and how many were resumed."""
    if held not in ("release", "discard"):
        raise RunStateError("Choose whether to release or discard the held runs.",
                            fields={"held": ["Use 'release' or 'discard'."]})
    done = {"resumed": 0, "released": 0, "discarded": 0, "continued": 0}
    for process in ApiProcess.objects.filter(breaker__paused_at__isnull=False):
        for key, value in process_resume(process=process, held=held, user=user).items():
            done[key] += value
        done["resumed"] += 1
    return done


def run_wait(*, run_id, seconds: float) -> Run:
    """The run once it ended or waits for people (a human step), or as it is after
    `seconds` (at most store.waiting.MAX_WAIT_SECONDS). No database connection is held
    while it waits; start the run with `trigger["wait"]` set so its end is announced
    (docs/user-guide/triggers.md, "Synchronous replies")."""
    return waiting.wait_until_settled(run_id, seconds)
