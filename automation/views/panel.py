"""The entity processing control panel: pick entities and a process, see how many match,
start a batch. Starting only counts and records the batch (batch_create); the worker
fans it out, so the answer comes at once whatever the size."""

from datetime import datetime, time

from django.db.models import Count
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_POST

from automation.exceptions import AutomationError
from automation.models import ApiProcess, Batch, Run
from automation.services.batches import batch_create, batch_entities
from automation.views.common import admin_context, json_error, json_service_error, require_perm
from entities.models import EntityType, ExternalLink, Status
from integrations.registry import all_connectors

DATES = {
    "created_from": ("createdFrom", time.min),
    "created_to": ("createdTo", time.max),
    "updated_from": ("updatedFrom", time.min),
    "updated_to": ("updatedTo", time.max),
}


class FilterError(ValueError):
    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("Some filters are not valid.")
        self.fields = fields


def selection(params) -> tuple[EntityType, dict]:
    """(entity type, entity_filter spec) from the panel's form fields."""
    errors: dict[str, list[str]] = {}
    entity_type = (
        EntityType.objects.filter(pk=params.get("entity_type") or 0).first()
        if str(params.get("entity_type", "")).isdigit()
        else None
    )
    if entity_type is None:
        errors["entity_type"] = ["Choose an entity type."]
    spec: dict = {}
    for name in ("status", "search"):
        if params.get(name, "").strip():
            spec[name] = params[name].strip()
    for name, (key, clock) in DATES.items():
        if params.get(name):
            day = parse_date(params[name])
            if day is None:
                errors[name] = ["Use a date like 2025-01-31."]
            else:
                spec[key] = timezone.make_aware(datetime.combine(day, clock)).isoformat()
    link = params.get("link", "")
    if link.startswith(("has:", "lacks:")):
        mode, _, provider = link.partition(":")
        spec["hasLink" if mode == "has" else "lacksLink"] = provider
    if errors:
        raise FilterError(errors)
    return entity_type, spec


def control_panel(request, model_admin):
    require_perm(request, "automation.add_batch")
    types = list(EntityType.objects.order_by("name"))
    statuses: dict[int, list] = {t.pk: [] for t in types}
    for type_id, key, label in Status.objects.order_by("position", "id").values_list(
        "entity_type_id", "key", "label"
    ):
        statuses.setdefault(type_id, []).append([key, label])
    processes = [
        {"slug": p.slug, "name": p.name, "type": p.entity_type_id}
        for p in ApiProcess.objects.filter(enabled=True, current_version__isnull=False).order_by(
            "name"
        )
    ]
    providers = sorted(
        set(ExternalLink.objects.order_by().values_list("provider", flat=True).distinct())
        | set(linking_providers())
    )
    context = admin_context(
        request,
        model_admin,
        "Entity processing",
        entity_types=types,
        providers=providers,
        recent=recent_batches(),
        options={"statuses": statuses, "processes": processes},
        count_url=reverse("admin:automation_panel_count"),
        start_url=reverse("admin:automation_panel_start"),
    )
    return TemplateResponse(request, "admin/automation/batch/panel.html", context)


def linking_providers() -> list[str]:
    """Providers whose connectors link entities to what they create: the link filters
    offer them before any link exists."""
    return [slug for slug, cls in all_connectors().items() if cls.creates_external_links]


def recent_batches(limit: int = 8) -> list[dict]:
    batches = list(
        Batch.objects.select_related("process", "entity_type").order_by("-created_at")[:limit]
    )
    counts: dict = {}
    for batch_id, status, n in (
        Run.objects.filter(batch__in=[b.pk for b in batches])
        .order_by()
        .values_list("batch_id", "status")
        .annotate(n=Count("pk"))
    ):
        counts.setdefault(batch_id, {})[status] = n
    rows = []
    for batch in batches:
        c = counts.get(batch.pk, {})
        done, failed = c.get(Run.Status.COMPLETED, 0), c.get(Run.Status.FAILED, 0)
        rows.append(
            {
                "batch": batch,
                "done": done,
                "failed": failed,
                "done_pct": 100 * done / batch.total if batch.total else 0,
                "failed_pct": 100 * failed / batch.total if batch.total else 0,
            }
        )
    return rows


@require_GET
def panel_count(request, model_admin):
    require_perm(request, "automation.add_batch")
    try:
        entity_type, spec = selection(request.GET)
    except FilterError as exc:
        return json_error(
            "Some filters are not valid.", status=422, code="invalid", fields=exc.fields
        )
    return JsonResponse(
        {
            "count": batch_entities(entity_type, spec).count(),
            "filter": spec,
            "entityType": entity_type.key,
            "label": entity_type.name,
        }
    )


@require_POST
def panel_start(request, model_admin):
    require_perm(request, "automation.add_batch")
    try:
        entity_type, spec = selection(request.POST)
    except FilterError as exc:
        return json_error(
            "Some filters are not valid.", status=422, code="invalid", fields=exc.fields
        )
    process = ApiProcess.objects.filter(slug=request.POST.get("process", "")).first()
    if process is None or process.entity_type_id not in (None, entity_type.pk):
        return json_error(
            "Choose a process for this entity type.",
            status=422,
            code="invalid",
            fields={"process": ["Choose a process for this entity type."]},
        )
    try:
        batch = batch_create(
            entity_type=entity_type, process=process, filter=spec, user=request.user
        )
    except AutomationError as exc:
        return json_service_error(exc)
    return JsonResponse(
        {
            "id": str(batch.pk),
            "total": batch.total,
            "url": reverse("admin:automation_batch_change", args=[batch.pk]),
        },
        status=201,
    )
