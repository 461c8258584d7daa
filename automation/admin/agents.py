"""Agents in the admin: the list (key, model, tools, version) and the editor, checked
like the API (services.agents); each save is a new version (docs/user-guide/agents.md)."""

from django import forms
from django.contrib import admin

from automation.models import Agent
from automation.services.agents import API_NAMES, agent_problems, agent_save

FORM_FIELDS = ["key", "instructions", "connection", "model", "tools", "output_schema",
               "max_iterations", "max_tool_calls", "max_tokens", "timeout_seconds",
               "input_price", "output_price", "description"]
MODEL_NAMES = {api: field for field, api in API_NAMES.items()}


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = FORM_FIELDS
        widgets = {"instructions": forms.Textarea(attrs={"rows": 8})}

    def clean(self):
        cleaned = super().clean()
        values = {name: cleaned.get(name) for name in FORM_FIELDS if name != "key"}
        if self.errors:
            return cleaned
        for path, problems in agent_problems(values).items():
            field = MODEL_NAMES.get(path, path.split("[")[0])
            for problem in problems:
                self.add_error(field if field in self.fields else None,
                               f"{path}: {problem}" if path != field else problem)
        return cleaned


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["key", "model", "connection", "tools_col", "version", "updated_at"]
    list_select_related = ["connection"]
    search_fields = ["key", "instructions"]
    readonly_fields = ["version"]

    def get_readonly_fields(self, request, obj=None):
        return ["key", "version"] if obj is not None else ["version"]

    @admin.display(description="tools")
    def tools_col(self, obj: Agent) -> str:
        return ", ".join(map(str, obj.tools or [])) or "—"

    def save_model(self, request, obj, form, change):
        """Through the service: the same checks as the API and a new version."""
        values = {name: form.cleaned_data.get(name) for name in FORM_FIELDS if name != "key"}
        saved = agent_save(key=obj.key, agent=Agent.objects.get(pk=obj.pk) if change else None,
                           **values)
        obj.pk, obj.version = saved.pk, saved.version
