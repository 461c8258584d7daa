"""One batch: progress (polled), cancel, retry failed, and the per-entity outcomes."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from automation.exceptions import AutomationError
from automation.models import ApiProcess, Batch, Run
from automation.services.batches import (
    batch_cancel,
    batch_pause,
    batch_progress,
    batch_rerun_create,
    batch_rerun_preview,
    batch_resume,
    batch_retry_failed,
)
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


@require_POST
def batch_pause_view(request, model_admin, object_id):
    return _batch_act(
        request, object_id, batch_pause, "Paused: no more runs start until you resume."
    )


@require_POST
def batch_resume_view(request, model_admin, object_id):
    return _batch_act(request, object_id, batch_resume, "Resumed from where the batch stopped.")


def _batch_act(request, object_id, service, done: str):
    require_perm(request, "automation.add_batch")
    batch = _batch(object_id)
    try:
        service(batch=batch)
    except AutomationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("admin:automation_batch_change", batch.pk)


RERUN_FIELDS = ("status", "failedAt", "createdFrom", "createdTo", "errorContains")


@require_http_methods(["GET", "POST"])
def bulk_rerun_view(request, model_admin):
    """Bulk re-run by query: the filter, a preview (count and a sample), then a start as
    a rate-limited batch whose page shows its progress (services.batches)."""
    require_perm(request, "automation.add_batch")
    source = request.POST if request.method == "POST" else request.GET
    form = {key: source.get(key, "") for key in (
        "process", *RERUN_FIELDS, "fromStep", "version", "rate")}
    form["status"] = form["status"] or "failed"
    form["version"] = form["version"] or "pinned"
    form["rate"] = form["rate"] or "5"
    preview, error = None, None
    process = ApiProcess.objects.filter(slug=form["process"]).first()
    if request.method == "POST" or form["process"]:
        spec = {key: form[key] for key in RERUN_FIELDS if form[key]}
        try:
            if process is None:
                raise AutomationError("Choose a process.")
            if "start" in request.POST:
                rate = float(form["rate"])
                batch = batch_rerun_create(
                    process=process, filter=spec, from_step=form["fromStep"] or None,
                    version=form["version"], rate_per_second=rate,
                    repeat_effects=source.get("repeat_effects") == "on", user=request.user)
                return redirect("admin:automation_batch_change", batch.pk)
            preview = batch_rerun_preview(process=process, filter=spec)
        except ValueError:
            error = "The rate must be a number of runs per second."
        except AutomationError as exc:
            error = exc.message
    context = admin_context(
        request, model_admin, "Bulk re-run", form=form, preview=preview, error=error,
        processes=ApiProcess.objects.order_by("name").values_list("slug", "name"),
        statuses=Run.FINISHED)
    return TemplateResponse(request, "admin/automation/batch/reruns.html", context)
