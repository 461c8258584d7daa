"""Approvals: the inbox stands in for the list; every request stays browsable under
"history"."""

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from automation.admin.base import ReadOnlyAdmin
from automation.models import ApprovalRequest
from automation.views.approvals import decide, inbox
from automation.views.common import bind
from automation.views.present import status_pill


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "step",
        "process",
        "run_link",
        "status_col",
        "approvers_col",
        "created_at",
        "decided_at",
    ]
    list_filter = ["status", "run__process"]
    list_select_related = ["run__process", "step_run"]
    readonly_fields = [
        "run",
        "step_run",
        "approvers",
        "required_approvals",
        "deadline",
        "status",
        "decisions",
        "context",
        "created_at",
        "decided_at",
        "form",
        "fields",
        "snapshot",
        "version",
        "changes",
        "history",
        "reject_quorum",
        "escalate_to",
        "remind_at",
        "reminded_at",
        "escalate_at",
        "escalated_at",
        "link_expiry_seconds",
    ]

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff  # every approver has an inbox

    def get_model_perms(self, request) -> dict:
        return {**super().get_model_perms(request), "view": True}  # the sidebar links the inbox

    def get_urls(self):
        return [
            path(
                "history/",
                self.admin_site.admin_view(self.history_view),
                name="automation_approval_history",
            ),
            path("<int:object_id>/decide/", bind(self, decide), name="automation_approval_decide"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        return inbox(request, self)

    def history_view(self, request):
        return super().changelist_view(request, {"title": "All approval requests"})

    @admin.display(description="step")
    def step(self, obj: ApprovalRequest) -> str:
        return obj.step_run.step_id

    @admin.display(description="process", ordering="run__process__name")
    def process(self, obj: ApprovalRequest) -> str:
        return obj.run.process.name

    @admin.display(description="run")
    def run_link(self, obj: ApprovalRequest):
        url = reverse("admin:automation_run_change", args=[obj.run_id])
        return format_html('<a class="ef-mono" href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="status", ordering="status")
    def status_col(self, obj: ApprovalRequest):
        return status_pill(obj.status)

    @admin.display(description="approvers")
    def approvers_col(self, obj: ApprovalRequest) -> str:
        return ", ".join(map(str, obj.approvers))
