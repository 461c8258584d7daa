"""Finds work that a crash or a lost task left behind and rings the doorbell again."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from automation.engine.queue import send_step
from automation.models import StepRun
from automation.services.approvals import approvals_expire
from entities.outbox import events_sweep


def steps_sweep(*, pending_grace_seconds: float | None = None, limit: int = 5000) -> int:
    """Re-enqueue steps whose lease expired (worker died) or whose task never came."""
    now = timezone.now()
    grace = pending_grace_seconds
    if grace is None:
        grace = getattr(settings, "ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS", 60)
    lost = StepRun.objects.annotate(due=Coalesce("not_before", "created_at")).filter(
        Q(status=StepRun.Status.RUNNING, lease_expires_at__lt=now)
        | Q(status=StepRun.Status.PENDING, due__lte=now - timedelta(seconds=grace))
    ).values_list("pk", flat=True)[:limit]
    ids = list(lost)
    for step_run_id in ids:
        send_step(step_run_id)
    return len(ids)


def sweep_all() -> dict:
    from automation.services.webhooks import deliveries_due_sweep

    from automation.triggers.schedules import sync_schedules

    return {"events": events_sweep(), "steps": steps_sweep(), "approvals": approvals_expire(),
            "webhooks": deliveries_due_sweep(), "schedules": sync_schedules()}
