"""Parameter sets (POST /api/parameters): browsable, with the schema they were checked
against; they are written only through the API's service."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from automation.admin.base import ReadOnlyAdmin
from automation.models import Parameters
from automation.views.present import pretty_json


@admin.register(Parameters)
class ParametersAdmin(ReadOnlyAdmin):
    list_display = ["id", "process", "created_at"]
    list_filter = ["process"]
    list_select_related = ["process"]
    search_fields = ["id", "process__slug", "process__name"]
    fields = ["id", "process_link", "created_at", "parameters_json", "schema_json"]
    readonly_fields = fields

    @admin.display(description="workflow definition")
    def process_link(self, obj: Parameters):
        url = reverse("admin:automation_apiprocess_change", args=[obj.process_id])
        return format_html('<a href="{}">{}</a> <span class="ef-mono">{}</span>', url,
                           obj.process.name, obj.process.slug)

    @admin.display(description="parameters")
    def parameters_json(self, obj: Parameters):
        return format_html('<pre class="ef-code">{}</pre>', pretty_json(obj.parameters))

    @admin.display(description="parameters schema of the definition")
    def schema_json(self, obj: Parameters):
        schema = obj.process.parameters_schema
        if schema is None:
            return "None: any JSON object is accepted."
        return format_html('<pre class="ef-code">{}</pre>', pretty_json(schema))
