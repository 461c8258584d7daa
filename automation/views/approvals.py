"""The approvals inbox (pending requests this user may decide, with their forms) and the
one-click link page that approvers reach from their email without logging in
(docs/user-guide/human-tasks.md)."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from automation.exceptions import AutomationError
from automation.models import ApiProcess, ApprovalRequest, Run
from automation.services.approval_forms import FormDataError, form_fields, form_from_post
from automation.services.approvals import (
    LinkRefusedError,
    approval_decide,
    approvals_for_user,
    link_decide,
    link_open,
)
from automation.views.common import admin_context, get_or_404
from automation.views.present import pretty_json, until

AGES = {"1h": ("older than 1 hour", timedelta(hours=1)),
        "1d": ("older than 1 day", timedelta(days=1)),
        "7d": ("older than 7 days", timedelta(days=7))}


def decider_name(approval: ApprovalRequest, user) -> str:
    """The name the approvers list knows this user by: email or username; a group
    member decides under their username."""
    listed = {str(entry).lower() for entry in approval.approvers}
    for name in (user.email, user.username):
        if name and name.lower() in listed:
            return name
    return user.username


def entered(post) -> dict:
    """The form's fields as typed, to show again next to their errors."""
    return {key[5:]: value for key, value in post.items() if key.startswith("data.")}


def _card(approval: ApprovalRequest, user=None, *, values=None, errors=None) -> dict:
    context = approval.context or {}
    return {
        "approval": approval,
        "run": approval.run,
        "entity": approval.run.entity,
        "step_id": approval.step_run.step_id,
        "process": approval.run.process,
        "input_json": pretty_json(context.get("input", approval.step_run.input)),
        "snapshot_json": pretty_json(approval.snapshot),
        "approved_so_far": sum(1 for d in approval.decisions if d.get("approved")),
        "due": until(approval.deadline),
        "decided_by": decider_name(approval, user) if user is not None else "",
        "fields": form_fields(approval.form, values, errors),
        "form_error": bool(errors),
    }


def inbox(request, model_admin, *, failed: dict | None = None, status: int = 200):
    """Filters: `who` (mine, or all for those who may see every request), `process`
    (slug), `age` (older than); paginated. `failed`: one card's entered values and
    field errors, shown again after a decision the form refused."""
    can_see_all = model_admin.has_view_permission(request)
    who = "all" if request.GET.get("who") == "all" and can_see_all else "mine"
    if who == "all":
        rows = list(ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
                    .select_related("run__process", "step_run", "run__entity")
                    .order_by("-created_at", "-id"))
    else:
        rows = approvals_for_user(request.user)
    process = request.GET.get("process", "")
    if process:
        rows = [a for a in rows if a.run.process.slug == process]
    age = request.GET.get("age", "")
    if age in AGES:
        cutoff = timezone.now() - AGES[age][1]
        rows = [a for a in rows if a.created_at <= cutoff]
    size = getattr(settings, "ENTITYFLOW_INBOX_PAGE_SIZE", 20)
    page = Paginator(rows, size).get_page(request.GET.get("page"))
    failed = failed or {}
    items = [_card(a, request.user, values=failed["values"], errors=failed["errors"])
             if failed.get("pk") == a.pk else _card(a, request.user)
             for a in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    context = admin_context(
        request, model_admin, "Approvals inbox", items=items, page=page, total=len(rows),
        can_see_all=can_see_all, who=who, process=process, age=age,
        ages=[(key, label) for key, (label, _) in AGES.items()],
        processes=ApiProcess.objects.order_by("name").values_list("slug", "name"),
        query=query.urlencode(),
    )
    return TemplateResponse(request, "admin/automation/approvalrequest/inbox.html", context,
                            status=status)


@require_POST
def decide(request, model_admin, object_id):
    approval = get_or_404(
        ApprovalRequest.objects.select_related("run__process", "step_run"), object_id
    )
    approved = request.POST.get("decision") == "approve"
    comment = request.POST.get("comment", "").strip()[:2000]
    data = form_from_post(approval.form, request.POST)
    try:
        version = int(request.POST.get("version") or approval.version)
    except ValueError:
        version = -1
    try:
        approval = approval_decide(
            approval=approval, approved=approved, comment=comment,
            decided_by=decider_name(approval, request.user), user=request.user,
            data=data, version=version,
        )
    except FormDataError as exc:
        messages.error(request, "Check the highlighted fields.")
        return inbox(request, model_admin, status=422,
                     failed={"pk": approval.pk, "values": entered(request.POST),
                             "errors": exc.errors})
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


@csrf_protect
@require_http_methods(["GET", "POST"])
def link_page(request, token):
    """A one-click link: GET shows the request and its decision button (mail scanners
    open links, so only the POST decides); an expired, used or outdated link shows why
    and changes nothing."""
    try:
        approval, claims = link_open(token)
    except LinkRefusedError as exc:
        return _link_response(request, refused=exc.message, status=410)
    values, errors = None, None
    if request.method == "POST":
        data = form_from_post(approval.form, request.POST)
        try:
            approval = link_decide(token, comment=request.POST.get("comment", "").strip()[:2000],
                                   data=data)
        except FormDataError as exc:
            values, errors = entered(request.POST), exc.errors
        except AutomationError as exc:
            return _link_response(request, refused=exc.message, status=exc.http_status)
        else:
            verb = "approved" if claims["d"] == "approve" else "rejected"
            return _link_response(request, done=f"You {verb} this request. Thank you.")
    return _link_response(request, item=_card(approval, values=values, errors=errors),
                          decision=claims["d"], person=claims["p"],
                          status=422 if errors else 200)


def _link_response(request, *, status: int = 200, **context):
    return TemplateResponse(request, "automation/approval_link.html", context, status=status)
