"""Run history: a filtered list, and the run page in place of the change form."""

from datetime import datetime, time, timedelta

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html

from automation.admin.base import ReadOnlyAdmin
from automation.models import Run
from automation.views.common import bind
from automation.views.operations import run_rerun_view
from automation.views.present import between, status_pill
from automation.views.runs import run_cancel_view, run_page, run_retry_view, run_status
from entities.models import Entity, EntityType


class EntityTypeFilter(admin.SimpleListFilter):
    """The type of the run's entity; offered even when there is only one type."""

    title = "entity type"
    parameter_name = "entity_type"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in EntityType.objects.values_list("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(entity__entity_type_id=value)
        return queryset


class EntityFilter(admin.SimpleListFilter):
    """One entity's runs (`?entity=<id>`, linked from the entity page). Shown only while
    set: there are too many entities to list; the search box finds them by reference."""

    title = "entity"
    parameter_name = "entity"

    def lookups(self, request, model_admin):
        entity = self._entity()
        return [(str(entity.pk), entity.reference)] if entity else []

    def queryset(self, request, queryset):
        entity = self._entity()
        return queryset.filter(entity=entity) if entity else queryset

    def _entity(self) -> Entity | None:
        if not hasattr(self, "_chosen"):
            try:
                self._chosen = (
                    Entity.objects.only("id", "reference").filter(pk=self.value()).first()
                )
            except (ValueError, ValidationError):
                self._chosen = None
        return self._chosen


class CreatedBetweenFilter(admin.ListFilter):
    """Runs created from one day to another (both included): for the day the presets of
    "created at" do not name. Either end may be left open."""

    title = "created between"
    template = "admin/automation/run/created_between_filter.html"
    parameters = ("created_from", "created_to")

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.days = {name: _day(self.used_parameters.get(name)) for name in self.parameters}

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return list(self.parameters)

    def queryset(self, request, queryset):
        start, end = self.days["created_from"], self.days["created_to"]
        if start:
            queryset = queryset.filter(created_at__gte=_midnight(start))
        if end:
            queryset = queryset.filter(created_at__lt=_midnight(end + timedelta(days=1)))
        return queryset

    def choices(self, changelist):
        yield {
            "values": {name: self.used_parameters.get(name, "") for name in self.parameters},
            "invalid": [
                n for n, day in self.days.items() if self.used_parameters.get(n) and not day
            ],
            "active": any(self.days.values()),
            "hidden": [
                (key, value)
                for key, value in changelist.params.items()
                if key not in self.parameters and key != "p"
            ],
            "clear": changelist.get_query_string(remove=self.parameters),
        }


def _day(value: str | None):
    try:
        return parse_date(value or "")
    except ValueError:  # well formed but not a day, like 2025-02-30
        return None


def _midnight(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = [
        "short_id",
        "process",
        "entity_link",
        "status_col",
        "priority",
        "trigger_col",
        "created_at",
        "took",
    ]
    list_filter = [
        "status",
        "priority",
        "process",
        EntityTypeFilter,
        EntityFilter,
        "created_at",
        CreatedBetweenFilter,
    ]
    list_select_related = ["process", "entity"]
    search_fields = ["entity__reference", "process__slug"]
    show_full_result_count = False
    list_per_page = 50

    def get_urls(self):
        return [
            path(
                "<path:object_id>/cancel/",
                bind(self, run_cancel_view),
                name="automation_run_cancel",
            ),
            path(
                "<path:object_id>/retry/", bind(self, run_retry_view), name="automation_run_retry"
            ),
            path("<path:object_id>/status/", bind(self, run_status), name="automation_run_status"),
            path("<path:object_id>/rerun/", bind(self, run_rerun_view),
                 name="automation_run_rerun"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Run history", **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return run_page(request, self, object_id)

    @admin.display(description="run", ordering="created_at")
    def short_id(self, obj: Run):
        return format_html('<span class="ef-mono">{}</span>', str(obj.pk)[:8])

    @admin.display(description="entity", ordering="entity__reference")
    def entity_link(self, obj: Run):
        if obj.entity is None:
            return "—"
        url = reverse("admin:entities_entity_change", args=[obj.entity_id])
        return format_html('<a href="{}">{}</a>', url, obj.entity.reference)

    @admin.display(description="status", ordering="status")
    def status_col(self, obj: Run):
        return status_pill(obj.status)

    @admin.display(description="trigger")
    def trigger_col(self, obj: Run) -> str:
        trigger = obj.trigger or {}
        return " · ".join(str(v) for v in (trigger.get("type"), trigger.get("source")) if v) or "—"

    @admin.display(description="duration")
    def took(self, obj: Run) -> str:
        return between(obj.started_at, obj.finished_at) if obj.started_at else "—"
