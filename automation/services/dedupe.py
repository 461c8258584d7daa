"""Dedupe: a repeat of a key within its window starts nothing and is answered with what
the first one started (docs/user-guide/concurrency.md#dedupe). A trigger's `dedupeKey`
(CEL over the event) and POST /api/events' `dedupeKey` (the key itself) share the marks.

The mark is claimed in the transaction that starts the run (or publishes the event):
the unique (scope, key) decides between two concurrent repeats, so only one starts."""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.definitions.flow import DEFAULT_DEDUPE_WINDOW_MS
from automation.models import DebounceMark, DedupeMark, Run
from automation.services.runs import run_start
from entities.models import EntityEvent
from entities.outbox import event_publish

EVENTS_SCOPE = "events"


def _claim(scope: str, key: str, window_ms: int | None) -> tuple[DedupeMark, bool]:
    """(the mark, whether it was already taken and not expired). Call in a transaction."""
    now = timezone.now()
    expires = now + timedelta(milliseconds=window_ms or DEFAULT_DEDUPE_WINDOW_MS)
    key = key[:300]
    mark = DedupeMark.objects.select_for_update().filter(scope=scope, key=key).first()
    if mark is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent first one may win
                return DedupeMark.objects.create(scope=scope, key=key, expires_at=expires), False
        except IntegrityError:
            mark = DedupeMark.objects.select_for_update().get(scope=scope, key=key)
    if mark.expires_at > now:
        return mark, True
    mark.expires_at, mark.run, mark.event = expires, None, None  # expired: this one is new
    mark.save(update_fields=["expires_at", "run", "event"])
    return mark, False


def run_start_once(*, dedupe: tuple[str, str, int | None], **start) -> tuple[Run | None, bool]:
    """run_start(**start) unless `dedupe` (scope, key, window in ms) was seen within its
    window: then (the run the first one started, True)."""
    scope, key, window_ms = dedupe
    with transaction.atomic():
        mark, duplicate = _claim(scope, key, window_ms)
        if duplicate:
            return mark.run, True
        run, _ = run_start(**start)
        DedupeMark.objects.filter(pk=mark.pk).update(run=run)
    return run, False


def event_publish_once(*, dedupe_key: str, window_ms: int | None = None, **publish
                       ) -> tuple[EntityEvent, bool]:
    """entities.outbox.event_publish(**publish) unless `dedupe_key` was published within
    the window: then (that first event, True), and nothing is published or started."""
    with transaction.atomic():
        mark, duplicate = _claim(EVENTS_SCOPE, dedupe_key, window_ms)
        if duplicate and mark.event_id is not None:
            return EntityEvent.objects.get(pk=mark.event_id), True
        event = event_publish(**publish)
        DedupeMark.objects.filter(pk=mark.pk).update(event=event)
    return event, False


MARK_KEEP = timedelta(days=1)  # past its window (or due time), a mark is kept this long


def flow_marks_prune(limit: int = 5000) -> int:
    """Delete dedupe marks past their window and settled debounce marks, a chunk a pass
    (the sweeper), so the tables hold the keys in use, not every key ever seen."""
    before = timezone.now() - MARK_KEEP
    deleted = 0
    for rows in (DedupeMark.objects.filter(expires_at__lt=before),
                 DebounceMark.objects.filter(owed=False, due_at__lt=before)):
        ids = list(rows.values_list("pk", flat=True)[:limit])
        deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
