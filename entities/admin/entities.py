"""Entities: a list with status badges, and a page that saves only through the services."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList

from entities.admin.badges import badge_for, badge_html, status_map
from entities.admin.forms import EntityForm
from entities.admin.page import entity_page
from entities.exceptions import EntitiesError
from entities.models import Entity, Status
from entities.services import entity_create, entity_transition, entity_update

SERVICE_ERROR = "_entityflow_service_error"


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        statuses = Status.objects.order_by("position", "label")
        type_id = request.GET.get("entity_type__id__exact", "")
        if type_id.isdigit():
            statuses = statuses.filter(entity_type_id=type_id)
        labels: dict[str, str] = {}
        for key, label in statuses.values_list("key", "label"):
            labels.setdefault(key, label)
        return list(labels.items())

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class EntityChangeList(ChangeList):
    """Looks up every badge on the page in one query instead of one per row."""

    def get_queryset(self, request, *args, **kwargs):
        return super().get_queryset(request, *args, **kwargs).defer("data")

    def get_results(self, request):
        super().get_results(request)
        statuses = status_map(self.result_list)
        for entity in self.result_list:
            entity.badge = badge_for(entity, statuses)


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):
    form = EntityForm
    list_display = ["reference", "entity_type", "status_badge", "unmet", "updated_at"]
    list_filter = ["entity_type", StatusFilter]
    list_select_related = ["entity_type"]
    search_fields = ["reference"]

    def get_changelist(self, request, **kwargs):
        return EntityChangeList

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Entity):
        return badge_html(getattr(obj, "badge", None) or badge_for(obj))

    @admin.display(description="unmet requirements")
    def unmet(self, obj: Entity) -> str:
        count = len(obj.unmet_requirements or [])
        return f"⚠ {count}" if count else "—"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["entity_type", "reference", "data"]})]
        return [
            (None, {"fields": ["reference", "entity_type", "move_to", "expected_version"]}),
            ("Edit data", {"fields": ["data"], "classes": ["collapse"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["reference", "entity_type"] if obj else []

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting would bypass the services and drop the event history

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        error = getattr(request, SERVICE_ERROR, None)
        if error is not None:
            form = type(form.__name__, (form,), {"service_error": error})
        return form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A refused save rolls back and the form is shown again with the service's reasons."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except EntitiesError as error:
            if request.method != "POST" or getattr(request, SERVICE_ERROR, None):
                raise
            setattr(request, SERVICE_ERROR, error)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj: Entity, form, change: bool) -> None:
        data = form.cleaned_data.get("data") or {}
        if not change:
            created = entity_create(
                entity_type=form.cleaned_data["entity_type"],
                reference=form.cleaned_data["reference"],
                data=data,
            )
            obj.__dict__.update(created.__dict__)  # the admin goes on with the saved entity
            return
        version = form.cleaned_data.get("expected_version")
        if "data" in form.changed_data:
            entity_update(entity=obj, data=data, expected_version=version)
            version = None  # checked already; the transition continues from the new version
        target = form.cleaned_data.get("move_to")
        if target:
            entity_transition(entity=obj, to_status=target, expected_version=version)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not obj._state.adding:
            context["entity_page"] = entity_page(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)
