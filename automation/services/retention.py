"""Retention: how long each kind of row is kept, and the prune that enforces it.

Every kind is deleted in chunks of its own short transaction, walking its index from a
cursor, so a prune never holds a lock for long and never rescans what it kept. What an
unfinished run needs is never deleted: its steps, its event, its inbound delivery, and the
runs of a batch still going. Runs and step runs are deleted by the run store alone.
The idempotency ledger's rows go with the last run that used them (the run store deletes
them with the runs, store/pruning.py). docs/operating.md#retention
"""

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_q.models import Task

from automation.models import InboundDelivery, Run, WebhookDelivery
from automation.store import get_store
from entities.models import EntityEvent

# In the order a prune goes: runs first, so the events they pointed at can go after them.
KINDS = ("runs", "events", "webhook_deliveries", "inbound_deliveries", "task_results")
DEFAULT_DAYS = {"runs": 30, "events": 30, "webhook_deliveries": 30, "inbound_deliveries": 30,
                "task_results": 7}
Progress = Callable[[str, int], None]


def retention_days() -> dict[str, int]:
    """Days each kind is kept (0 or less: forever), ENTITYFLOW_RETENTION_DAYS over the
    defaults."""
    return {**DEFAULT_DAYS, **getattr(settings, "ENTITYFLOW_RETENTION_DAYS", {})}


def cutoffs(now: datetime | None = None) -> dict[str, datetime]:
    """The moment before which each kind goes; kinds kept forever are left out."""
    now = now or timezone.now()
    return {kind: now - timedelta(days=days) for kind, days in retention_days().items()
            if kind in KINDS and days > 0}


def _prunable(kind: str, before: datetime) -> QuerySet:
    """The rows of a kind (other than runs) that may go."""
    if kind == "events":  # dispatched, and no run points at it (runs go first)
        return EntityEvent.objects.filter(
            created_at__lt=before, dispatched_at__isnull=False
        ).filter(~Exists(Run.objects.filter(event_id=OuterRef("pk"))))
    if kind == "webhook_deliveries":  # never one still being delivered
        return WebhookDelivery.objects.filter(created_at__lt=before).exclude(
            status=WebhookDelivery.Status.PENDING)
    if kind == "inbound_deliveries":  # a retried delivery of a live run must still be known
        return InboundDelivery.objects.filter(received_at__lt=before).filter(
            Q(run__isnull=True) | Q(run__status__in=Run.FINISHED))
    return Task.objects.filter(stopped__lt=before)


def prune_counts(now: datetime | None = None) -> dict[str, int]:
    """What a prune would delete now, per kind (runs also give their step runs)."""
    counts = dict.fromkeys([*KINDS, "steps"], 0)
    for kind, before in cutoffs(now).items():
        if kind == "runs":
            counts["runs"], counts["steps"] = get_store().count_prunable(before)
        else:
            counts[kind] = _prunable(kind, before).count()
    return counts


def prune(*, chunk: int | None = None, now: datetime | None = None,
          progress: Progress | None = None, seconds: float | None = None) -> dict[str, int]:
    """Delete what retention says may go; returns the numbers deleted per kind, and
    `more` = 1 when it stopped after `seconds` with work left (the task goes on later).
    `progress(kind, deleted)` is told after every chunk."""
    chunk = chunk or getattr(settings, "ENTITYFLOW_PRUNE_CHUNK", 1000)
    deadline = None if seconds is None else time.monotonic() + seconds
    deleted = dict.fromkeys([*KINDS, "steps", "more"], 0)
    for kind, before in cutoffs(now).items():
        chunks = _run_chunks(before, chunk) if kind == "runs" else _chunks(kind, before, chunk)
        for rows, steps in chunks:
            deleted[kind] += rows
            deleted["steps"] += steps
            if progress:
                progress(kind, deleted[kind])
            if deadline is not None and time.monotonic() > deadline:
                deleted["more"] = 1
                return deleted
    return deleted


def _run_chunks(before: datetime, chunk: int) -> Iterator[tuple[int, int]]:
    store, after = get_store(), None
    while True:
        pruned = store.prune_finished(before, chunk=chunk, after=after)
        yield pruned.runs, pruned.steps
        if pruned.done:
            return
        after = pruned.cursor


def _chunks(kind: str, before: datetime, chunk: int) -> Iterator[tuple[int, int]]:
    """Next `chunk` keys in key order from a cursor, then a delete of those keys that
    still qualify (checked again in the delete itself), one transaction each."""
    after = None
    while True:
        rows = _prunable(kind, before)
        if after is not None:
            rows = rows.filter(pk__gt=after)
        keys = list(rows.order_by("pk").values_list("pk", flat=True)[:chunk])
        if not keys:
            return
        with transaction.atomic():
            doomed = _prunable(kind, before).filter(pk__in=keys)
            # Events: no run points at them (checked in this very statement), so the
            # collector's look for runs to unlink would find none; skip it.
            count = doomed._raw_delete(doomed.db) if kind == "events" else doomed.delete()[0]
        yield count, 0
        if len(keys) < chunk:
            return
        after = keys[-1]
