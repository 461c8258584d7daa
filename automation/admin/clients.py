"""API clients: the list, and creation through api_client_create, which shows the
secret exactly once (it is stored only as a hash)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from automation.admin.base import ReadOnlyAdmin
from automation.models import ApiClient
from automation.models.clients import SCOPES
from automation.services.api_auth import (
    api_client_create,
    api_client_deactivate,
    api_client_update,
)
from automation.views.common import admin_context

SCOPE_CHOICES = [(s, s) for s in SCOPES]
SCOPE_HELP = ("read: every GET; run: start and steer work (runs, events, entities, batches, "
              "approvals); define: workflow definitions, functions, agents, webhooks; "
              "admin: everything.")


class ClientCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Who uses it, e.g. “Warehouse system”.")
    rate_limit_per_minute = forms.IntegerField(
        min_value=1, initial=600, label="Rate limit per minute"
    )
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, initial=list(SCOPES), required=False,
                                       widget=forms.CheckboxSelectMultiple, help_text=SCOPE_HELP)


class ClientChangeForm(forms.ModelForm):
    """What staff may change on an existing client; name and key stay as issued."""

    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, required=False,
                                       widget=forms.CheckboxSelectMultiple, help_text=SCOPE_HELP)

    class Meta:
        model = ApiClient
        fields = ["scopes", "rate_limit_per_minute"]


@admin.register(ApiClient)
class ApiClientAdmin(ReadOnlyAdmin):
    list_display = ["name", "key", "active", "scopes", "rate_limit_per_minute", "created_at",
                    "last_used_at"]
    list_filter = ["active"]
    search_fields = ["name", "key"]
    form = ClientChangeForm
    fields = ["name", "key", "active", "scopes", "rate_limit_per_minute", "created_at",
              "last_used_at"]
    readonly_fields = ["name", "key", "active", "created_at", "last_used_at"]
    actions = ["deactivate"]

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("automation.change_apiclient")

    def save_model(self, request, obj, form, change):
        api_client_update(client=obj, scopes=form.cleaned_data["scopes"],
                          rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"])

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("automation.add_apiclient")

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ClientCreateForm(request.POST or None)
        created = None
        if request.method == "POST" and form.is_valid():
            client, secret = api_client_create(
                name=form.cleaned_data["name"],
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
                scopes=form.cleaned_data["scopes"],
            )
            self.log_addition(request, client, [{"added": {}}])
            created = {"client": client, "secret": secret}
        context = admin_context(
            request,
            self,
            "New API client" if not created else "API client created",
            form=form,
            created=created,
        )
        return TemplateResponse(request, "admin/automation/apiclient/add.html", context)

    @admin.action(
        description="Deactivate selected clients (revokes their tokens)", permissions=["deactivate"]
    )
    def deactivate(self, request, queryset):
        for client in queryset.filter(active=True):
            api_client_deactivate(client=client)
        self.message_user(
            request, "Deactivated; their tokens stop working on the next request.", messages.SUCCESS
        )

    def has_deactivate_permission(self, request) -> bool:
        return request.user.has_perm("automation.change_apiclient")
