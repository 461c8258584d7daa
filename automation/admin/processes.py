"""API processes: the list, and an editor that saves only through process_save."""

import importlib
import json

from django import forms
from django.contrib import admin, messages
from django.urls import path, reverse
from django.utils.html import format_html

from automation.admin.process_list import annotate_process_list, last_run_cell, success_rate_cell
from automation.models import ApiProcess
from automation.services.breaker import process_pause
from automation.services.processes import process_delete, process_save, process_set_enabled
from automation.services.runs import process_resume
from automation.views.common import bind
from automation.views.editor import (
    definition_panel,
    definition_preview,
    parse_definition,
    validation_errors,
)
from automation.views.modal import entity_dry_run, entity_processes, entity_run
from automation.views.operations import process_breaker_view
from automation.views.present import pretty_json, trigger_summary

STARTER = {
    "steps": [
        {
            "id": "start",
            "name": "Start",
            "type": "function",
            "function": "transform",
            "config": {"params": {"output": {"reference": "entity.reference"}}},
        }
    ],
    "triggers": [{"type": "manual"}],
}


class ProcessForm(forms.ModelForm):
    definition = forms.CharField(
        widget=forms.Textarea(
            attrs={
                "class": "ef-code",
                "rows": 28,
                "spellcheck": "false",
                "autocomplete": "off",
                "data-ef-editor": "1",
            }
        ),
        help_text="JSON with steps and triggers (the API's definition shape). Checked as you type.",
    )

    parameters_schema_text = forms.CharField(
        label="Parameters schema",
        required=False,
        widget=forms.Textarea(attrs={"class": "ef-code", "rows": 8, "spellcheck": "false"}),
        help_text="Optional JSON Schema that every parameter set (POST /api/parameters) of this "
                  "process must match. Empty: any JSON object.",
    )

    class Meta:
        model = ApiProcess
        fields = ["slug", "name", "description", "entity_type", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        source = self.instance.definition if self.instance.pk else STARTER
        self.fields["definition"].initial = json.dumps(source, indent=2, ensure_ascii=False)
        if self.instance.parameters_schema is not None:
            self.fields["parameters_schema_text"].initial = json.dumps(
                self.instance.parameters_schema, indent=2, ensure_ascii=False)
        self.definition_errors: dict[str, list[str]] = {}

    def clean_parameters_schema_text(self):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        text = self.cleaned_data["parameters_schema_text"].strip()
        if not text:
            return None
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON — {exc}") from None
        if not isinstance(schema, dict):
            raise forms.ValidationError("A JSON Schema is a JSON object.")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise forms.ValidationError(f"Not a valid JSON Schema: {exc.message}") from None
        return schema

    def clean_definition(self):
        definition, parse_error = parse_definition(self.cleaned_data["definition"])
        if parse_error:
            raise forms.ValidationError(f"Not valid JSON — {parse_error}")
        self.definition_errors = validation_errors(definition)
        if self.definition_errors:
            count = sum(len(m) for m in self.definition_errors.values())
            raise forms.ValidationError(
                f"{count} problem{'s' if count > 1 else ''} in the definition; "
                "each is shown beside the step it names. Nothing was saved."
            )
        return definition


@admin.register(ApiProcess)
class ApiProcessAdmin(admin.ModelAdmin):
    form = ProcessForm
    list_display = ["name", "entity_type", "triggers_col", "enabled", "paused_col", "last_run",
                    "success_rate"]
    list_filter = ["enabled", "entity_type"]
    list_select_related = ["entity_type", "current_version", "breaker"]
    search_fields = ["name", "slug"]
    actions = ["enable_selected", "disable_selected", "pause_selected", "resume_selected"]
    change_form_template = "admin/automation/apiprocess/change_form.html"

    def get_queryset(self, request):
        return annotate_process_list(super().get_queryset(request))

    @admin.display(description="triggers")
    def triggers_col(self, obj: ApiProcess) -> str:
        return trigger_summary(obj.definition)

    @admin.display(description="paused")
    def paused_col(self, obj: ApiProcess):
        state = getattr(obj, "breaker", None)  # none: never paused
        if state is None or not state.paused:
            return "—"
        url = reverse("admin:automation_apiprocess_breaker", args=[obj.pk])
        return format_html('<a class="ef-status ef-status-waiting" href="{}" title="{}">paused</a>',
                           url, state.reason)

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: ApiProcess):
        return last_run_cell(obj)

    @admin.display(description="success (7 days)")
    def success_rate(self, obj: ApiProcess):
        return success_rate_cell(obj)

    def get_fieldsets(self, request, obj=None):
        return [(None, {"fields": [("name", "slug"), "entity_type", "enabled", "description",
                                   "parameters_schema_text"]})]

    def get_readonly_fields(self, request, obj=None):
        return ["slug"] if obj else []  # the id external callers use; a new slug is a new process

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj else {"slug": ["name"]}

    def get_urls(self):
        return [
            path("preview/", bind(self, definition_preview), name="automation_process_preview"),
            path("<path:object_id>/breaker/", bind(self, process_breaker_view),
                 name="automation_apiprocess_breaker"),
            path(
                "entity/<uuid:entity_id>/",
                bind(self, entity_processes),
                name="automation_entity_processes",
            ),
            path(
                "entity/<uuid:entity_id>/dry-run/",
                bind(self, entity_dry_run),
                name="automation_entity_dry_run",
            ),
            path(
                "entity/<uuid:entity_id>/run/", bind(self, entity_run), name="automation_entity_run"
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj: ApiProcess, form, change: bool) -> None:
        data = form.cleaned_data
        saved = process_save(
            slug=obj.slug,
            name=data["name"],
            definition=data["definition"],
            description=data.get("description", ""),
            entity_type=data.get("entity_type"),
            enabled=data.get("enabled", False),
            user=request.user,
            parameters_schema=data.get("parameters_schema_text"),
        )
        obj.__dict__.update(saved.__dict__)  # the admin goes on (log, redirect) with the saved row

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        text = form.data.get("definition") if form.is_bound else form.fields["definition"].initial
        errors = form.definition_errors if form.is_bound and form.definition_errors else None
        context["definition_panel"] = definition_panel(text or "", errors)
        context["definition_field"] = form["definition"]
        if obj is not None and obj.pk:
            context["versions"] = [
                {
                    "v": v,
                    "json": pretty_json(v.definition),
                    "steps": len(v.definition.get("steps", [])),
                }
                for v in obj.versions.select_related("created_by").order_by("-number")[:50]
            ]
            context["next_run"] = _next_run(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def delete_model(self, request, obj: ApiProcess) -> None:
        process_delete(process=obj)

    def delete_queryset(self, request, queryset) -> None:
        for process in queryset:
            process_delete(process=process)

    @admin.action(description="Enable selected processes", permissions=["change"])
    def enable_selected(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected processes", permissions=["change"])
    def disable_selected(self, request, queryset):
        self._set_enabled(request, queryset, False)

    @admin.action(description="Pause selected processes (hold starts, stop runs at their "
                              "next step)", permissions=["change"])
    def pause_selected(self, request, queryset):
        for process in queryset:
            process_pause(process=process, reason=f"paused by {request.user.get_username()}")
        self.message_user(request, f"{queryset.count()} process(es) paused.", messages.SUCCESS)

    @admin.action(description="Resume selected processes (release held starts)",
                  permissions=["change"])
    def resume_selected(self, request, queryset):
        done = {"released": 0, "continued": 0, "resumed": 0}
        for process in queryset.filter(breaker__paused_at__isnull=False):
            result = process_resume(process=process, held="release", user=request.user)
            done["released"] += result["released"]
            done["continued"] += result["continued"]
            done["resumed"] += 1
        self.message_user(request, f"{done['resumed']} process(es) resumed: "
                                   f"{done['continued']} held step(s) continued, "
                                   f"{done['released']} held start(s) released.",
                          messages.SUCCESS)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = [
            process_set_enabled(process=p, enabled=enabled)
            for p in queryset
            if p.enabled != enabled
        ]
        self.message_user(
            request,
            f"{len(changed)} process(es) {'enabled' if enabled else 'disabled'}.",
            messages.SUCCESS,
        )


def _next_run(process: ApiProcess):
    """The next scheduled start, when the schedules module can tell."""
    schedules = importlib.import_module("automation.triggers.schedules")
    next_run_for = getattr(schedules, "next_run_for", None)
    return next_run_for(process) if next_run_for else None
