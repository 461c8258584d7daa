"""The "Process entity" modal on the entity page: pick an applicable process, see its
dry-run, start it. The modal then polls the run's status endpoint (views.runs)."""

import json

from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from automation.definitions.steps import find_step_type
from automation.exceptions import AutomationError
from automation.models import ApiProcess
from automation.services.dry_run import dry_run
from automation.services.runs import run_start
from automation.views.common import json_error, json_service_error, require_perm
from entities.models import Entity


def applicable_processes(entity: Entity):
    return (
        ApiProcess.objects.filter(enabled=True, current_version__isnull=False)
        .filter(Q(entity_type=entity.entity_type_id) | Q(entity_type__isnull=True))
        .select_related("entity_type")
        .order_by("name")
    )


@require_GET
def entity_processes(request, model_admin, entity_id):
    require_perm(request, "automation.add_run")
    entity = get_object_or_404(Entity.objects.select_related("entity_type"), pk=entity_id)
    return render(
        request,
        "automation/modal/processes.html",
        {"entity": entity, "processes": applicable_processes(entity)},
    )


@require_GET
def entity_dry_run(request, model_admin, entity_id):
    require_perm(request, "automation.add_run")
    entity = get_object_or_404(Entity.objects.select_related("entity_type"), pk=entity_id)
    process = get_object_or_404(applicable_processes(entity), slug=request.GET.get("process", ""))
    preview, problem = _dry_run(process, entity)
    unmet = (
        preview["unmet"] if preview and preview["unmet"] is not None else entity.unmet_requirements
    )
    return render(
        request,
        "automation/modal/dry_run.html",
        {
            "entity": entity,
            "process": process,
            "preview": preview,
            "problem": problem,
            "unmet": unmet or [],
        },
    )


@require_POST
def entity_run(request, model_admin, entity_id):
    require_perm(request, "automation.add_run")
    entity = get_object_or_404(Entity.objects.select_related("entity_type"), pk=entity_id)
    process = applicable_processes(entity).filter(slug=request.POST.get("process", "")).first()
    if process is None:
        return json_error(
            "Choose a process that applies to this entity.",
            status=422,
            code="invalid",
            fields={"process": ["Not an applicable process."]},
        )
    try:
        run, _ = run_start(
            process=process,
            trigger={"type": "manual", "source": "admin"},
            entity=entity,
            user=request.user,
        )
    except AutomationError as exc:
        return json_service_error(exc)
    run.refresh_from_db(fields=["status"])
    return JsonResponse(
        {
            "id": str(run.pk),
            "status": run.status,
            "finished": run.is_finished,
            "statusUrl": reverse("admin:automation_run_status", args=[run.pk]),
            "runUrl": reverse("admin:automation_run_change", args=[run.pk]),
        },
        status=201,
    )


def _dry_run(process: ApiProcess, entity: Entity) -> tuple[dict | None, str | None]:
    """The dry_run service's preview, normalised for the template (or why there is none)."""
    try:
        result = dry_run(process=process, entity=entity)
    except AutomationError as exc:
        return None, exc.message
    return normalize_dry_run(result or {}), None


MARKS = {
    "yes": ("✓", "would run"),
    "no": ("–", "would not run"),
    "maybe": ("?", "may run: it depends on what an earlier step returns"),
}


def normalize_dry_run(result: dict) -> dict:
    """The dry_run service's answer, shaped for the modal (steps that would not run last)."""
    steps = [_dry_step(step) for step in result.get("steps") or [] if isinstance(step, dict)]
    steps += [_dry_step({"id": sid, "wouldRun": "no"}) for sid in result.get("skipped") or []]
    warnings = []
    if result.get("enabled") is False:
        warnings.append("The process is disabled; Run will be refused.")
    if result.get("applicable") is False:
        warnings.append("The process is meant for another entity type.")
    unmet = result.get("unmetRequirements")
    if unmet is not None:
        unmet = [u if isinstance(u, dict) else {"message": str(u)} for u in unmet]
    return {"steps": steps, "unmet": unmet, "warnings": warnings}


def _dry_step(step: dict) -> dict:
    runs = step.get("wouldRun", "yes")
    runs = {True: "yes", False: "no"}.get(runs, runs) if isinstance(runs, bool) else str(runs)
    mark, title = MARKS.get(runs, MARKS["yes"])
    evaluation, value = step.get("evaluation"), step.get("value")
    if evaluation == "unknown":
        value_text, value_class = "known when it runs", ""
    elif evaluation == "error":
        value_text, value_class = "error", "ef-val-false"
    else:
        value_text = json.dumps(value, ensure_ascii=False, default=str)[:80]
        value_class = (
            {True: "ef-val-true", False: "ef-val-false"}.get(value, "")
            if isinstance(value, bool)
            else ""
        )
    detail = step.get("function") or ""
    if step.get("approvers"):
        detail = "approvers: " + ", ".join(map(str, step["approvers"]))
    kind = find_step_type(step.get("type"))
    if kind is not None and kind.has_body and step.get("items") is not None:
        detail = f"{step['items']} item(s)"
    return {
        "id": step.get("id", "?"),
        "type": step.get("type", ""),
        "would_run": runs,
        "mark": mark,
        "mark_title": title,
        "condition": step.get("condition", ""),
        "detail": detail,
        "has_value": "value" in step or bool(evaluation),
        "value_text": value_text,
        "value_class": value_class,
        "note": step.get("error", ""),
    }
