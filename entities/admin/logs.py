"""Read-only admin for what other code writes: external links and the event outbox."""

from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from entities.models import EntityEvent, ExternalLink


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services and the outbox; staff look, nobody edits here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def entity_link(entity):
    if entity is None:
        return "—"
    url = reverse("admin:entities_entity_change", args=[entity.pk])
    return format_html('<a href="{}">{}</a>', url, entity.reference)


@admin.register(ExternalLink)
class ExternalLinkAdmin(ReadOnlyAdmin):
    list_display = ["entity_ref", "provider", "object_type", "external_id", "open", "actor",
                    "updated_at"]
    list_filter = ["provider", "object_type"]
    list_select_related = ["entity"]
    search_fields = ["external_id", "entity__reference"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="entity", ordering="entity__reference")
    def entity_ref(self, obj: ExternalLink):
        return entity_link(obj.entity)

    @admin.display(description="link")
    def open(self, obj: ExternalLink):
        if not obj.url:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener">open ↗</a>', obj.url)


class DispatchedFilter(admin.SimpleListFilter):
    title = "dispatched"
    parameter_name = "dispatched"

    def lookups(self, request, model_admin):
        return [("yes", "Dispatched"), ("no", "Waiting")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(dispatched_at__isnull=self.value() == "no")
        return queryset


@admin.register(EntityEvent)
class EntityEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "entity_ref", "move", "changed", "actor", "created_at",
                    "dispatched"]
    list_filter = ["type", "entity_type_key", DispatchedFilter]
    list_select_related = ["entity"]
    search_fields = ["entity__reference", "type"]
    show_full_result_count = False

    @admin.display(description="entity", ordering="entity__reference")
    def entity_ref(self, obj: EntityEvent):
        return entity_link(obj.entity)

    @admin.display(description="status")
    def move(self, obj: EntityEvent):
        if obj.from_status and obj.from_status != obj.to_status:
            return f"{obj.from_status} → {obj.to_status}"
        return obj.to_status or "—"

    @admin.display(description="changed fields")
    def changed(self, obj: EntityEvent):
        return ", ".join(obj.changed_fields) or "—"

    @admin.display(description="dispatched", boolean=True, ordering="dispatched_at")
    def dispatched(self, obj: EntityEvent) -> bool:
        return obj.dispatched_at is not None

    def get_fields(self, request, obj=None):
        return [f for f in super().get_fields(request, obj) if f != "skipped"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "skipped_triggers"]

    @admin.display(description="skipped triggers")
    def skipped_triggers(self, obj: EntityEvent):
        """Each trigger that matched but did not start its process, and why."""
        if not obj.skipped:
            return "—"
        return format_html_join(
            "", "<div class=\"ef-skipped\"><strong>{}</strong> (trigger {}): {}</div>",
            ((s.get("process"), s.get("trigger"), s.get("reason")) for s in obj.skipped))
