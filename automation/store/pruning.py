"""Deleting finished runs with their step runs, a bounded chunk per transaction.

Retention (automation/services/retention.py) asks for this; it lives in the store because
nothing else may write runs. A chunk walks the runs in (created_at, id) order from a
cursor, so a run that must stay (unfinished, or in a batch still going) is looked at once
per prune, not once per chunk. docs/operating.md#retention says what is kept.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from automation.models import (
    ApprovalRequest,
    Batch,
    Effect,
    HeldStart,
    InboundDelivery,
    Run,
    StepRun,
)

# A batch still going counts its runs (services.batches.batch_progress): keep them.
_BATCH_GOING = (Batch.Status.PENDING, Batch.Status.FANNING_OUT, Batch.Status.RUNNING)


@dataclass(frozen=True)
class Pruned:
    """One chunk: how many runs were looked at and deleted, and where to go on."""

    scanned: int
    runs: int
    steps: int
    cursor: tuple[datetime, str] | None

    @property
    def done(self) -> bool:
        return self.cursor is None


def prunable(before: datetime) -> Q:
    """Finished before `before`, and not needed by a batch that is still going.
    finished_at >= created_at, so created_at < before narrows through its index."""
    return (Q(created_at__lt=before, status__in=Run.FINISHED, finished_at__lt=before)
            & ~Q(batch__status__in=_BATCH_GOING))


def prune_chunk(using: str, before: datetime, *, chunk: int,
                after: tuple[datetime, str] | None) -> Pruned:
    """Delete the prunable runs among the next `chunk` runs created before `before`.

    The runs are locked with SKIP LOCKED (PostgreSQL): a run that staff is retrying or
    cancelling right now is skipped, never waited for; the lock re-checks the status, so
    a run retried between the look and the lock is not deleted."""
    candidates = Run.objects.using(using).filter(created_at__lt=before)
    if after is not None:
        candidates = candidates.filter(  # the >= bounds the index scan, the rest breaks ties
            Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]),
            created_at__gte=after[0])
    seen = list(candidates.order_by("created_at", "id").values_list("created_at", "id")[:chunk])
    if not seen:
        return Pruned(0, 0, 0, None)
    with transaction.atomic(using=using):
        doomed = list(Run.objects.using(using).filter(prunable(before), pk__in=[i for _, i in seen])
                      .select_for_update(skip_locked=True, of=("self",))
                      .values_list("pk", flat=True))
        steps = _delete_runs(using, doomed) if doomed else 0
    cursor = (seen[-1][0], str(seen[-1][1]))
    return Pruned(len(seen), len(doomed), steps, cursor if len(seen) == chunk else None)


def _delete_runs(using: str, run_ids: list) -> int:
    """What points at the runs first (approvals go with them; an inbound delivery keeps
    its row without its run), then the step runs, then the runs. Plain deletes: Django's
    collector would load every step row first."""
    ApprovalRequest.objects.using(using).filter(run_id__in=run_ids).delete()
    # The idempotency ledger lives as long as the last run that used an effect; a re-run
    # kept after the run it re-ran loses only its link back.
    Effect.objects.using(using).filter(run_id__in=run_ids)._raw_delete(using)
    Run.objects.using(using).filter(rerun_of__in=run_ids).update(rerun_of=None)
    # a sub-process run kept after its parent loses only its link up
    Run.objects.using(using).filter(parent_run__in=run_ids).update(
        parent_run=None, parent_step_run=None)
    HeldStart.objects.using(using).filter(run_id__in=run_ids).update(run=None)
    InboundDelivery.objects.using(using).filter(run_id__in=run_ids).update(run=None)
    steps = StepRun.objects.using(using).filter(run_id__in=run_ids)._raw_delete(using)
    Run.objects.using(using).filter(pk__in=run_ids)._raw_delete(using)
    return steps


def count_prunable(using: str, before: datetime) -> tuple[int, int]:
    """(runs, step runs) a prune would delete now: for --dry-run."""
    runs = Run.objects.using(using).filter(prunable(before))
    steps = StepRun.objects.using(using).filter(run__in=runs.values("pk"))
    return runs.count(), steps.count()
