"""Connections (added and changed here), functions and outbound webhooks (lists staff
read). Credentials and secrets are never shown."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from automation.admin.base import ReadOnlyAdmin
from automation.admin.forms_connections import (
    ConnectionForm,
    clear_input_name,
    clearable,
    credential_input_name,
)
from automation.connections.secrets import SecretDecryptError
from automation.connections.services import (
    connection_create,
    connection_credentials_present,
    connection_test,
    connection_update,
)
from automation.exceptions import AutomationError
from automation.functions.ratelimit import connection_limit_text
from automation.functions.registry import all_actions, get_action, validate_params
from automation.models import Connection, Function, WebhookDelivery, WebhookSubscription
from automation.views.present import status_pill
from integrations.exceptions import ConnectorError
from integrations.registry import all_connectors

CREDENTIALS_NOTE = ("Stored encrypted and never shown again. When changing a connection, "
                    "leave a secret blank to keep the stored one.")


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Add and change go through the connection services (credentials encrypted at rest);
    the form never renders a stored secret (see forms_connections)."""

    form = ConnectionForm
    list_display = ["name", "provider", "base_url", "rate_limit", "last_test"]
    list_filter = ["provider"]
    search_fields = ["name"]
    actions = ["test_connection"]
    change_form_template = "admin/automation/connection/change_form.html"

    @admin.display(description="Rate limit")
    def rate_limit(self, obj: Connection) -> str:
        """Set in options as rateLimit (docs/user-guide/rate-limits.md)."""
        return connection_limit_text(obj)

    def get_readonly_fields(self, request, obj=None):
        return ["provider", "rate_limit", "last_test", "created_at"] if obj is not None else []

    def get_fieldsets(self, request, obj=None):
        fields = ["provider", "name", "base_url", "options"] + (["rate_limit"] if obj else [])
        sets = [(None, {"fields": fields})]
        if obj is None:
            providers = all_connectors()
        else:
            providers = {slug: cls for slug, cls in all_connectors().items()
                         if slug == obj.provider}
        present = self._present(obj)
        for slug, cls in providers.items():
            names = [(credential_input_name(slug, spec.name), clear_input_name(slug, spec.name))
                     if clearable(spec) and present.get(spec.name)
                     else credential_input_name(slug, spec.name)
                     for spec in cls.credential_fields]
            if names:
                sets.append((f"{cls.display_name} credentials", {
                    "fields": names, "classes": ["ef-credentials", f"ef-credentials-{slug}"],
                    "description": CREDENTIALS_NOTE}))
        if obj is not None:
            sets.append(("Connection test", {"fields": ["last_test", "created_at"]}))
        return sets

    @staticmethod
    def _present(obj: Connection | None) -> dict[str, bool]:
        if obj is None:
            return {}
        try:
            return connection_credentials_present(obj)
        except (SecretDecryptError, ConnectorError):
            return {}

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # functions refer to connections by row; nothing deletes them yet

    def save_model(self, request, obj, form, change):
        if change:
            whole = form.credential_changes if form.replace_credentials else None
            changes = None if form.replace_credentials else form.credential_changes or None
            connection_update(connection=obj, name=obj.name, base_url=obj.base_url or "",
                              options=obj.options or {}, credentials=whole,
                              credentials_changes=changes)
            return
        created = connection_create(provider=obj.provider, name=obj.name,
                                    base_url=obj.base_url or "", options=obj.options or {},
                                    credentials=form.credential_changes)
        obj.pk = created.pk
        obj.refresh_from_db()

    def construct_change_message(self, request, form, formsets, add=False):
        """Name the credentials that changed, never their values."""
        if add:
            return [{"added": {}}]
        credential_inputs = {name for name in form.fields if "__" in name}
        fields = [str(form.fields[name].label or name) for name in form.changed_data
                  if name not in credential_inputs]
        changed = form.changed_credential_labels()
        if changed:
            fields.append(f"credentials ({', '.join(changed)})")
        return [{"changed": {"fields": fields}}] if fields else []

    def get_urls(self):
        urls = super().get_urls()
        test = path("<path:object_id>/test/", self.admin_site.admin_view(self.test_view),
                    name="automation_connection_test")
        return [test, *urls]

    def test_view(self, request, object_id):
        """The change page's "Test connection" button (POST)."""
        connection = self.get_object(request, object_id)
        if connection is None:
            raise Http404("No such connection.")
        if request.method != "POST" or not self.has_test_permission(request):
            raise PermissionDenied
        self.test_connection(request, [connection])
        return redirect(reverse("admin:automation_connection_change", args=[connection.pk]))

    @admin.display(description="last test", ordering="last_tested_at")
    def last_test(self, obj: Connection):
        if obj.last_tested_at is None:
            return format_html('<span class="ef-quiet">{}</span>', "never tested")
        return format_html(
            '{} <span class="ef-quiet" title="{}">{}</span>',
            status_pill("ok" if obj.last_test_ok else "failed"),
            obj.last_tested_at,
            obj.last_test_message,
        )

    @admin.action(description="Test connection", permissions=["test"])
    def test_connection(self, request, queryset):
        for connection in queryset:
            try:
                ok, message = connection_test(connection)
            except AutomationError as exc:
                ok, message = False, exc.message
            level = messages.SUCCESS if ok else messages.ERROR
            self.message_user(request, f"{connection.name}: {message}", level)

    def has_test_permission(self, request) -> bool:
        return request.user.has_perm("automation.change_connection")


class FunctionForm(forms.ModelForm):
    action = forms.ChoiceField(choices=[])

    class Meta:
        model = Function
        fields = ["name", "action", "config", "params_schema", "connection", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [(name, name) for name in sorted(all_actions())]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") and isinstance(cleaned.get("config"), dict):
            try:
                validate_params(get_action(cleaned["action"]), cleaned["config"])
            except AutomationError as exc:
                for path, problems in (exc.fields or {"config": [exc.message]}).items():
                    self.add_error("config", f"{path}: {'; '.join(problems)}")
        return cleaned


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    form = FunctionForm
    list_display = ["name", "action", "connection", "updated_at"]
    list_filter = ["action"]
    list_select_related = ["connection"]
    search_fields = ["name", "action"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["url", "events_col", "active", "owner", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "owner"]
    exclude = ["secret_encrypted"]

    @admin.display(description="events")
    def events_col(self, obj: WebhookSubscription) -> str:
        return ", ".join(map(str, obj.events))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "event",
        "subscription",
        "status_col",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event"]
    list_select_related = ["subscription"]
    show_full_result_count = False

    @admin.display(description="status", ordering="status")
    def status_col(self, obj: WebhookDelivery):
        return status_pill(obj.status)
