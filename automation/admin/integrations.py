"""Connections, functions and outbound webhooks: lists staff read. Credentials and
secrets are never shown."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from automation.admin.base import ReadOnlyAdmin
from automation.exceptions import AutomationError
from automation.functions.registry import all_actions, get_action, validate_params
from automation.models import Connection, Function, WebhookDelivery, WebhookSubscription
from automation.services.connections import connection_test
from automation.views.present import status_pill


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    list_display = ["name", "provider", "base_url", "last_test"]
    list_filter = ["provider"]
    search_fields = ["name"]
    exclude = ["credentials_encrypted"]
    actions = ["test_connection"]

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
        fields = ["name", "action", "config", "connection", "description"]

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
