"""The approvals inbox: pending approvals this user may decide, and the decision."""

from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from automation.exceptions import AutomationError
from automation.models import ApprovalRequest, Run
from automation.services.approvals import approval_decide, approvals_for_user
from automation.views.common import admin_context, get_or_404
from automation.views.present import pretty_json, until


def decider_name(approval: ApprovalRequest, user) -> str:
    """The name the approvers list knows this user by: email or username; a group
    member decides under their username."""
    listed = {str(entry).lower() for entry in approval.approvers}
    for name in (user.email, user.username):
        if name and name.lower() in listed:
            return name
    return user.username


def inbox(request, model_admin):
    items = []
    for approval in approvals_for_user(request.user):
        context = approval.context or {}
        items.append(
            {
                "approval": approval,
                "run": approval.run,
                "entity": approval.run.entity,
                "step_id": approval.step_run.step_id,
                "process": approval.run.process,
                "input_json": pretty_json(context.get("input", approval.step_run.input)),
                "approved_so_far": sum(1 for d in approval.decisions if d.get("approved")),
                "due": until(approval.deadline),
                "decided_by": decider_name(approval, request.user),
            }
        )
    context = admin_context(
        request,
        model_admin,
        "Approvals inbox",
        items=items,
        can_see_all=model_admin.has_view_permission(request),
    )
    return TemplateResponse(request, "admin/automation/approvalrequest/inbox.html", context)


@require_POST
def decide(request, model_admin, object_id):
    approval = get_or_404(
        ApprovalRequest.objects.select_related("run__process", "step_run"), object_id
    )
    approved = request.POST.get("decision") == "approve"
    comment = request.POST.get("comment", "").strip()[:2000]
    try:
        approval = approval_decide(
            approval=approval,
            approved=approved,
            comment=comment,
            decided_by=decider_name(approval, request.user),
            user=request.user,
        )
    except AutomationError as exc:
        messages.error(request, exc.message)
        return redirect("admin:automation_approvalrequest_changelist")
    status = Run.objects.filter(pk=approval.run_id).values_list("status", flat=True).first()
    verb = "Approved" if approved else "Rejected"
    if approval.status == ApprovalRequest.Status.PENDING:
        messages.success(
            request, f"{verb}. Still waiting for {approval.required_approvals} approval(s) in all."
        )
    else:
        messages.success(
            request,
            f"{verb} “{approval.step_run.step_id}” of {approval.run.process.name}; "
            f"the run is now {status}.",
        )
    return redirect("admin:automation_approvalrequest_changelist")
