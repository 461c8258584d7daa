"""Debounce (docs/user-guide/concurrency.md#debounce): a burst of events for one key
starts one run.

trailing: each event moves the key's mark's `due_at` to now + window and keeps the
event; once the key has been quiet for the window, one run starts with the latest event
(so with the entity's latest state). The mark is a row, so a pending debounce survives a
worker restart: the first event of a burst sends a delayed doorbell for `due_at`
(store.delayed; no worker waits for it), and the sweeper fires any mark that is due and
still owed, whatever happened to that doorbell.
leading: the first event starts a run; events before the window ends are dropped.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.definitions.flow import Debounce
from automation.definitions.scope import event_scope
from automation.models import ApiProcess, DebounceMark
from automation.services.breaker import ProcessPausedError
from automation.services.runs import run_start
from automation.store.doorbell import enqueue_later
from entities.models import EntityEvent

SYNC_WAIT_SECONDS = 10  # synchronous mode: longer windows are fired by the sweeper
FIRE_TASK = "automation.tasks.debounce_fire"


def _mark(process_id: int, trigger_id: int, key: str, due_at) -> tuple[DebounceMark, bool]:
    """The key's mark, locked for this transaction; (mark, created)."""
    key = key[:300]
    mark = DebounceMark.objects.select_for_update().filter(trigger_id=trigger_id,
                                                           key=key).first()
    if mark is not None:
        return mark, False
    try:
        with transaction.atomic():  # a savepoint: a concurrent first event may win
            return DebounceMark.objects.create(process_id=process_id, trigger_id=trigger_id,
                                               key=key, due_at=due_at), True
    except IntegrityError:
        return DebounceMark.objects.select_for_update().get(trigger_id=trigger_id, key=key), False


def debounce_event(*, rule: Debounce, key: str, start: dict) -> tuple[object, str | None]:
    """Take one matching event (`start`: run_start's arguments) under `rule`:
    (the run started now or None, why nothing started now or None)."""
    now = timezone.now()
    due = now + timedelta(milliseconds=rule.window_ms)
    process, event = start["process"], start["event"]
    trigger_id = start["trigger"]["triggerId"]
    with transaction.atomic():
        mark, created = _mark(process.pk, trigger_id, key, due)
        if rule.mode == "leading":
            if not created and mark.due_at > now:
                return None, (f"Debounced (leading, {rule.window_ms} ms): a run of this key "
                              "started within the window.")
            run, _ = run_start(**start)
            mark.due_at, mark.run, mark.event = due, run, event
            mark.save(update_fields=["due_at", "run", "event"])
            return run, None
        first_of_burst = created or not mark.owed
        mark.due_at, mark.owed, mark.event = due, True, event
        mark.save(update_fields=["due_at", "owed", "event"])
        if first_of_burst:
            _queue_fire(mark.pk, due, rule.window_ms)
    return None, (f"Debounced (trailing, {rule.window_ms} ms): one run starts once the key "
                  "has been quiet for the window, with the latest event.")


def _queue_fire(mark_id: int, due, window_ms: int) -> None:
    """A delayed doorbell for the window's end (store.delayed), sent with the mark's
    transaction. In synchronous mode (no workers) the fire waits inline after the commit,
    for windows up to SYNC_WAIT_SECONDS; the sweeper fires longer ones."""
    if not settings.Q_CLUSTER.get("sync"):
        enqueue_later(FIRE_TASK, mark_id, due)
    elif window_ms <= SYNC_WAIT_SECONDS * 1000:
        transaction.on_commit(lambda: _fire_inline(mark_id))


def debounce_fire(mark_id: int) -> bool:
    """The window's delayed doorbell: start the mark's run if it is due. Later events of
    the burst moved the mark's due time on: then the doorbell is sent again for that time
    (no worker sleeps). True if this call started the run."""
    due = _owed_due(mark_id)
    if due is None:
        return False
    if due > timezone.now():
        enqueue_later(FIRE_TASK, mark_id, due)
        return False
    return _fire(mark_id)


def _fire_inline(mark_id: int) -> bool:
    while (due := _owed_due(mark_id)) is not None:
        wait = (due - timezone.now()).total_seconds()
        if wait > SYNC_WAIT_SECONDS:
            return False  # pushed far out by later events: the sweeper fires it
        if wait <= 0:
            return _fire(mark_id)
        time.sleep(wait)
    return False


def _owed_due(mark_id: int):
    return DebounceMark.objects.filter(pk=mark_id, owed=True).values_list(
        "due_at", flat=True).first()


def _fire(mark_id: int) -> bool:
    with transaction.atomic():
        mark = DebounceMark.objects.select_for_update().filter(
            pk=mark_id, owed=True, due_at__lte=timezone.now()).first()
        if mark is None:
            return False
        mark.owed = False
        event = EntityEvent.objects.select_related("entity").filter(pk=mark.event_id).first()
        process = ApiProcess.objects.select_related("current_version").get(pk=mark.process_id)
        run = None
        if event is not None and process.enabled:
            scope_event = event_scope(event)
            try:
                run, _ = run_start(
                    process=process, event=event, entity=event.entity, input=scope_event["data"],
                    trigger={"type": "status" if event.to_status else "event",
                             "triggerId": mark.trigger_id, "event": scope_event,
                             "debounced": True},
                    idempotency_key=f"event:{event.pk}:process:{process.pk}")
            except ProcessPausedError:  # held by the circuit breaker, not lost
                pass
        mark.run = run
        mark.save(update_fields=["owed", "run"])
    return run is not None


def debounces_sweep(limit: int = 500) -> int:
    """Fire the owed marks that are due (their task was lost, or the window was long)."""
    due = DebounceMark.objects.filter(owed=True, due_at__lte=timezone.now()).order_by(
        "due_at").values_list("pk", flat=True)[:limit]
    return sum(_fire(mark_id) for mark_id in list(due))
