"""Finds work that a crash or a lost task left behind and rings the doorbell again."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from automation.models import StepRun
from automation.store import get_store
from automation.store.doorbell import queued_steps, send_step

logger = logging.getLogger(__name__)


def steps_sweep(*, pending_grace_seconds: float | None = None, limit: int = 5000) -> int:
    """Re-enqueue steps whose lease expired (worker died) or whose task never came.

    A step is rung again only once per grace period: a doorbell still waiting behind a
    backlog is not duplicated on every pass (`rung_at` records the sweeper's last ring;
    the first doorbell is the step's creation or its `not_before`). And pending steps
    are rung only for as many as the broker's queue cannot be holding doorbells for:
    behind a backlog older than the grace period, re-ringing every pending step on every
    pass would bury the workers under doorbells that find nothing to do, which makes the
    backlog older still. A broker that lost its queue (a restart) is empty, so then all
    of them are rung. Stops at the first doorbell the broker refuses: it is down, and
    the next pass tries again.
    """
    now = timezone.now()
    grace = pending_grace_seconds
    if grace is None:
        grace = getattr(settings, "ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS", 60)
    cutoff = now - timedelta(seconds=grace)
    not_rung_lately = Q(rung_at__isnull=True) | Q(rung_at__lte=cutoff)
    steps = StepRun.objects.annotate(due=Coalesce("not_before", "created_at")).filter(
        not_rung_lately).order_by("due").values_list("pk", "priority")
    expired = list(steps.filter(status=StepRun.Status.RUNNING, lease_expires_at__lt=now)[:limit])
    pending = list(steps.filter(status=StepRun.Status.PENDING, due__lte=cutoff)[:limit])
    pending = pending[:_unqueued(len(pending))]
    rung = []
    for step_run_id, priority in expired + pending:
        try:
            send_step(step_run_id, priority=priority)
        except Exception:
            logger.warning("sweeper could not enqueue step run %s; trying again next pass",
                           step_run_id, exc_info=True)
            break
        rung.append(step_run_id)
    if rung:
        get_store().mark_rung(rung, now)
    # steps held for a pause whose resume raced the hold (store.pauses)
    return len(rung) + get_store().continue_held(None)


def _unqueued(pending: int) -> int:
    """How many of `pending` steps the broker's queue cannot be holding doorbells for.
    A batch chunk's doorbell rings for many steps (store.doorbell.enqueue_chunk), so the
    queue is counted in the steps its doorbells name. A queue that cannot be read
    counts as empty: better a spare doorbell than a lost one."""
    if not pending:
        return 0
    try:
        queued = queued_steps()
    except Exception:
        logger.warning("could not read the queue's size; ringing every pending step",
                       exc_info=True)
        queued = 0
    return max(0, pending - queued)


def subprocesses_sweep() -> int:
    """Sub-process runs a crash left between two transactions (store.subprocesses)."""
    return get_store().repair_subprocesses()
