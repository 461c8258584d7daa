"""Durable waits (docs/user-guide/waits.md): a `wait` or `waitForEvent` step that is due
is finished here, and an event finishes the steps waiting for it. Neither holds a
worker: the waiting step is rows only (its step run and a StepWait), so this works the
same after any restart, and the store's `resume` lets only one caller finish a step."""

import logging

from django.db import DatabaseError
from django.utils import timezone

from automation.definitions.scope import event_scope
from automation.definitions.steps import step_type
from automation.engine.scope import build_scope, load_entity
from automation.models import StepWait
from automation.store import get_store
from automation.store.graphs import graph_for
from automation.store.waits import forget_event_types, waited_event_types
from entities.exceptions import ExpressionError
from entities.expressions import evaluate_bool
from entities.models import EntityEvent

logger = logging.getLogger(__name__)
__all__ = ["event_arrived", "event_output", "event_waited_for", "forget_event_types",
           "wait_wake", "waiting_text", "waits_due_sweep"]
CATCH_UP_EVENTS = 200  # stored events of the type a late look reads, at most


def event_waited_for(event: EntityEvent) -> bool:
    """Asked by the outbox for every event: a set lookup, no query (store.waits)."""
    return event.type in waited_event_types()


def event_arrived(event: EntityEvent) -> int:
    """Finish every step waiting for `event`'s type whose condition holds for it (in the
    event's dispatch transaction); how many were finished. Only the StepWait rows of
    this type are read (an index on the type)."""
    finished = 0
    waits = StepWait.objects.filter(event_type=event.type, since__lte=event.created_at
                                    ).select_related("step_run__run").order_by("since")
    for wait in waits:
        try:
            if _matches(wait, event) and _finish_with_event(wait, event):
                finished += 1
        except DatabaseError:
            raise  # the dispatch's transaction is broken: the sweeper dispatches again
        except Exception:  # one broken wait must not hold back the event's other work
            logger.exception("event %s: could not check waiting step run %s",
                             event.pk, wait.pk)
    return finished


def wait_wake(step_run_id: int) -> bool:
    """A scheduled wake (or the sweeper): finish the wait if it is due. A waitForEvent
    step first looks among the stored events of its type for one it missed (one saved
    while the dispatching process did not yet know of the wait)."""
    wait = StepWait.objects.select_related("step_run__run").filter(pk=step_run_id).first()
    if wait is None:
        return False  # finished already: a wake that comes after is a no-op
    if wait.event_type:
        missed = _missed_event(wait)
        if missed is not None:
            return _finish_with_event(wait, missed)
    if wait.due_at > timezone.now():
        return False
    step_run = wait.step_run
    step = graph_for(step_run.run.version_id).steps[step_run.step_id]
    return get_store().resume(step_run.pk, step_type(step.type).when_due(step, step_run.input))


def waits_due_sweep(*, limit: int = 1000) -> int:
    """The sweeper's part: wake the waits that are due (their scheduled wake was lost or
    is late). Returns how many were finished."""
    due = list(StepWait.objects.filter(due_at__lte=timezone.now()).order_by("due_at")
               .values_list("pk", flat=True)[:limit])
    finished = 0
    for step_run_id in due:
        try:
            finished += bool(wait_wake(step_run_id))
        except Exception:  # one broken wait must not stop the others; the next pass retries
            logger.exception("could not wake waiting step run %s", step_run_id)
    return finished


def waiting_text(state: dict | None) -> str | None:
    """What a waiting step waits for, in words: a time, an event (until its timeout) or a
    sub-process's child run (the run page, the API's `waitingFor` and the entity's
    timeline say it alike)."""
    state = state if isinstance(state, dict) else {}
    wait = state.get("waitingFor")
    if isinstance(wait, dict):
        if wait.get("kind") == "event":
            where = f" where {wait['condition']}" if wait.get("condition") else ""
            return f"event {wait.get('event')}{where}, until {wait.get('dueAt')} (then timeout)"
        return f"until {wait.get('dueAt')}"
    if state.get("childRun"):
        return f"the sub-process run {state['childRun']}"
    return None


def event_output(event: EntityEvent) -> dict:
    """What a waitForEvent step gives on: the event, with a reference to its entity."""
    body = event_scope(event)
    snapshot = body.pop("entity", None)
    body["entity"] = ({"id": snapshot.get("id"), "type": snapshot.get("type"),
                       "reference": snapshot.get("reference")} if snapshot else None)
    return body


def _matches(wait: StepWait, event: EntityEvent) -> bool:
    if not wait.condition:
        return True
    step_run = wait.step_run
    run = step_run.run
    scope = build_scope(run, step_run, load_entity(run))
    scope["event"] = event_scope(event)
    try:
        return evaluate_bool(wait.condition, scope)
    except ExpressionError as exc:  # the run keeps waiting; its log says why this one did not do
        get_store().log_waiting(step_run.pk, f"event #{event.pk}: {exc.message}")
        return False


def _finish_with_event(wait: StepWait, event: EntityEvent) -> bool:
    step_run = wait.step_run
    step = graph_for(step_run.run.version_id).steps[step_run.step_id]
    outcome = step_type(step.type).when_event(step, event_output(event))
    return get_store().resume(step_run.pk, outcome)


def _missed_event(wait: StepWait) -> EntityEvent | None:
    events = EntityEvent.objects.filter(type=wait.event_type, created_at__gte=wait.since
                                        ).select_related("entity").order_by("id")
    for event in events[:CATCH_UP_EVENTS]:
        if _matches(wait, event):
            return event
    return None
