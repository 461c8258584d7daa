"""The rows of a waiting `wait` or `waitForEvent` step (docs/user-guide/waits.md).

When such a step records `waiting`, the store writes, in the same transaction, a
StepWait row (what it waits for, until when; the index the event dispatch and the
sweeper read) and a delayed doorbell (store.delayed) that a worker takes when it is due,
within about a poll interval. Nothing is held in a worker or in memory, so a wait
survives any restart; a lost or late wake is made up by the sweeper
(services.waits.waits_due_sweep), and finishing the step is the store's
`resume`, which only one caller can win."""

import math
import threading
import time
from datetime import timedelta

from django.db import transaction
from django.utils.dateparse import parse_datetime

from automation.models import Run, StepRun, StepWait
from automation.store.doorbell import enqueue_later

WAKE_TASK = "automation.tasks.wait_wake"
# An event that comes right after a wait began may be dispatched by a process that does
# not yet know anyone waits for its type (waited_event_types is read once a second): a
# wake this long after the start looks for such an event among the stored ones.
CATCH_UP_SECONDS = 2
TYPES_CHECK_SECONDS = 1.0  # how stale a process's list of waited-for event types may be
_lock = threading.Lock()
_types: dict = {"types": frozenset(), "checked": -math.inf}


def waited_event_types() -> frozenset[str]:
    """The event types some step waits for, read again at most once a second, so a save
    nobody waits for costs no query (the outbox asks for every event). A wait opened in
    this process is seen at once (open_wait); one opened elsewhere within the second, by
    the catch-up wake."""
    now = time.monotonic()
    if now - _types["checked"] < TYPES_CHECK_SECONDS:
        return _types["types"]
    with _lock:
        if now - _types["checked"] >= TYPES_CHECK_SECONDS:
            _types["types"] = frozenset(StepWait.objects.exclude(event_type="").values_list(
                "event_type", flat=True).distinct())
            _types["checked"] = now
    return _types["types"]


def forget_event_types() -> None:
    """Read the waited-for types again at the next event."""
    _types["checked"] = -math.inf


def open_wait(run: Run, step_run: StepRun, waiting_for: dict) -> None:
    """Index the wait and schedule its wake (inside the recording's transaction)."""
    due = parse_datetime(waiting_for["dueAt"])
    since = parse_datetime(waiting_for.get("since") or "") or step_run.started_at or due
    StepWait.objects.update_or_create(step_run=step_run, defaults={
        "run": run, "event_type": waiting_for.get("event") or "",
        "condition": waiting_for.get("condition") or "", "since": since, "due_at": due})
    wakes = [due]
    if waiting_for.get("event"):
        wakes.insert(0, min(due, since + timedelta(seconds=CATCH_UP_SECONDS)))
        transaction.on_commit(forget_event_types)
    for at in wakes:
        enqueue_later(WAKE_TASK, step_run.pk, at, priority=step_run.priority)


def close_wait(step_run_id: int) -> None:
    """The step stopped waiting (resumed): its index row goes with it."""
    StepWait.objects.filter(step_run_id=step_run_id).delete()


def close_run_waits(run: Run) -> None:
    """The run was cancelled or failed: none of its steps waits any more."""
    StepWait.objects.filter(run=run).delete()
