"""Entity types with their statuses, transitions and requirements, edited on one page."""

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from entities.admin.forms import PrettyJSONField
from entities.models import EntityType, Requirement, Status, Transition


def _parent_type_id(request) -> int | None:
    """The entity type being edited, so status pickers only offer its own statuses."""
    match = getattr(request, "resolver_match", None)
    object_id = match.kwargs.get("object_id") if match else None
    return int(object_id) if object_id and str(object_id).isdigit() else None


class OwnStatusesMixin:
    status_fields: tuple[str, ...] = ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.status_fields:
            kwargs["queryset"] = Status.objects.filter(entity_type_id=_parent_type_id(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class StatusForm(forms.ModelForm):
    class Meta:
        model = Status
        fields = ["key", "label", "color", "is_initial", "is_final", "fallback", "position"]
        widgets = {
            "key": forms.TextInput(attrs={"size": 14}),
            "label": forms.TextInput(attrs={"size": 18}),
            "color": forms.TextInput(attrs={"type": "color"}),
            "position": forms.NumberInput(attrs={"style": "width: 4em"}),
        }


class StatusInline(OwnStatusesMixin, admin.TabularInline):
    model = Status
    form = StatusForm
    fk_name = "entity_type"
    extra = 0
    status_fields = ("fallback",)


class TransitionInline(OwnStatusesMixin, admin.TabularInline):
    model = Transition
    fields = ["source", "target"]
    extra = 0
    status_fields = ("source", "target")
    verbose_name_plural = "transitions (save new statuses first to use them here)"


class RequirementForm(forms.ModelForm):
    class Meta:
        model = Requirement
        fields = ["name", "status", "position", "expression", "message"]
        widgets = {
            "expression": forms.Textarea(
                attrs={"rows": 2, "cols": 90, "style": "font-family: monospace"}
            ),
            "message": forms.TextInput(attrs={"size": 80}),
            "position": forms.NumberInput(attrs={"style": "width: 4em"}),
        }


class RequirementInline(OwnStatusesMixin, admin.StackedInline):
    model = Requirement
    form = RequirementForm
    fields = [("name", "status", "position"), "expression", "message"]
    extra = 0
    status_fields = ("status",)


class EntityTypeForm(forms.ModelForm):
    schema = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 18, "cols": 90, "class": "ef-json",
                                     "style": "font-family: monospace"}),
        help_text="JSON Schema that every entity's data must match.",
    )

    class Meta:
        model = EntityType
        fields = ["name", "key", "description", "schema"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 90})}

    def clean_schema(self):
        return self.cleaned_data.get("schema") or {}


@admin.register(EntityType)
class EntityTypeAdmin(admin.ModelAdmin):
    form = EntityTypeForm
    list_display = ["name", "key", "entity_count"]
    search_fields = ["key", "name"]
    prepopulated_fields = {"key": ["name"]}
    fields = ["name", "key", "description", "schema"]
    inlines = [StatusInline, TransitionInline, RequirementInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(num_entities=Count("entities"))

    @admin.display(description="entities", ordering="num_entities")
    def entity_count(self, obj: EntityType):
        url = reverse("admin:entities_entity_changelist")
        return format_html(
            '<a href="{}?entity_type__id__exact={}">{}</a>', url, obj.pk, obj.num_entities
        )
