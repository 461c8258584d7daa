"""One batch: progress (polled), cancel, retry failed, and the per-entity outcomes."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from automation.exceptions import AutomationError
from automation.models import Batch, Run
from automation.services.batches import batch_cancel, batch_progress, batch_retry_failed
from automation.views.common import admin_context, get_or_404, require_perm
from automation.views.present import between

PAGE_SIZE = 25
OUTCOME_FILTERS = {
    "failed": [Run.Status.FAILED],
    "completed": [Run.Status.COMPLETED],
    "active": [Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING],
    "cancelled": [Run.Status.CANCELLED],
}
FILTER_LABELS = {
    "status": "status",
    "search": "reference contains",
    "createdFrom": "created from",
    "createdTo": "created to",
    "updatedFrom": "updated from",
    "updatedTo": "updated to",
    "hasLink": "has a link to",
    "lacksLink": "has no link to",
}


def _batch(object_id) -> Batch:
    return get_or_404(
        Batch.objects.select_related("process", "entity_type", "created_by"), object_id
    )


def progress_of(batch: Batch) -> dict:
    """The service's progress plus how many runs the fan-out has created so far (the
    page shows it while a worker is still creating them)."""
    return {**batch_progress(batch), "created": batch.created_runs}


def batch_page(request, model_admin, object_id):
    require_perm(request, "automation.view_batch", "automation.add_batch")
    batch = _batch(object_id)
    progress = progress_of(batch)
    chips = [
        (FILTER_LABELS.get(k, k), str(v)[:10] if k.endswith(("From", "To")) else v)
        for k, v in (batch.filter or {}).items()
    ]
    context = admin_context(
        request,
        model_admin,
        f"Batch: {batch.process.name}",
        batch=batch,
        progress=progress,
        chips=chips,
        outcomes=outcomes_context(request, batch),
        can_act=request.user.has_perm("automation.add_batch"),
        progress_url=reverse("admin:automation_batch_progress", args=[batch.pk]),
        outcomes_url=reverse("admin:automation_batch_outcomes", args=[batch.pk]),
    )
    return TemplateResponse(request, "admin/automation/batch/page.html", context)


def outcomes_context(request, batch: Batch) -> dict:
    show = request.GET.get("show", "")
    runs = (
        batch.runs.select_related("entity")
        .only(
            "id",
            "status",
            "error",
            "started_at",
            "finished_at",
            "entity__id",
            "entity__reference",
        )
        .order_by("entity__reference")
    )
    if show in OUTCOME_FILTERS:
        runs = runs.filter(status__in=OUTCOME_FILTERS[show])
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "run": run,
            "took": between(run.started_at, run.finished_at) if run.finished_at else "—",
            "error": (run.error or {}).get("message", "") if isinstance(run.error, dict) else "",
        }
        for run in page.object_list
    ]
    return {
        "page": page,
        "rows": rows,
        "show": show,
        "tabs": [
            ("", "All"),
            ("failed", "Failed"),
            ("completed", "Completed"),
            ("active", "In progress"),
            ("cancelled", "Cancelled"),
        ],
    }


@require_GET
def batch_outcomes(request, model_admin, object_id):
    require_perm(request, "automation.view_batch", "automation.add_batch")
    batch = _batch(object_id)
    return render(
        request,
        "admin/automation/batch/outcomes.html",
        {
            "batch": batch,
            "outcomes": outcomes_context(request, batch),
            "outcomes_url": reverse("admin:automation_batch_outcomes", args=[batch.pk]),
        },
    )


@require_GET
def batch_progress_view(request, model_admin, object_id):
    require_perm(request, "automation.view_batch", "automation.add_batch")
    return JsonResponse(progress_of(_batch(object_id)))


@require_POST
def batch_cancel_view(request, model_admin, object_id):
    require_perm(request, "automation.add_batch")
    batch = _batch(object_id)
    try:
        batch_cancel(batch=batch)
    except AutomationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The batch was cancelled; runs not yet finished were stopped.")
    return redirect("admin:automation_batch_change", batch.pk)


@require_POST
def batch_retry_view(request, model_admin, object_id):
    require_perm(request, "automation.add_batch")
    batch = _batch(object_id)
    try:
        retried = batch_retry_failed(batch=batch)
    except AutomationError as exc:
        messages.error(request, exc.message)
    else:
        level = messages.SUCCESS if retried else messages.INFO
        messages.add_message(
            request,
            level,
            f"Retrying {retried} failed run(s) from their failed step."
            if retried
            else "There were no failed runs to retry.",
        )
    return redirect("admin:automation_batch_change", batch.pk)
