"""Deciding human approval steps."""

from django.db import transaction
from django.utils import timezone

from automation.definitions.steps.outcome import Outcome
from automation.exceptions import ApprovalNotAllowedError, RunStateError
from automation.models import ApprovalRequest
from automation.store import get_store
from automation.store.graphs import graph_for
from entities.actors import current_actor


def approver_matches(approval: ApprovalRequest, *, name: str, user=None) -> bool:
    """`name` (username or email) or `user` is one of the approvers, directly or by group."""
    names = {n.lower() for n in [name, getattr(user, "username", ""), getattr(user, "email", "")] if n}
    groups = set(user.groups.values_list("name", flat=True)) if user is not None and user.pk else set()
    for entry in approval.approvers:
        entry_l = entry.lower()
        if entry_l in names or (entry_l.startswith("group:") and entry[6:] in groups):
            return True
    return False


def approvals_for_user(user):
    pending = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).select_related(
        "run__process", "step_run", "run__entity")
    return [a for a in pending if approver_matches(a, name=user.username, user=user)]


def approval_decide(*, approval: ApprovalRequest, approved: bool, comment: str = "",
                    decided_by: str, user=None) -> ApprovalRequest:
    """Record one decision; enough approvals (or one rejection) finish the step."""
    with transaction.atomic():
        approval = ApprovalRequest.objects.select_for_update().get(pk=approval.pk)
        if approval.status != ApprovalRequest.Status.PENDING:
            raise RunStateError(f"This approval is already {approval.status}.")
        if not approver_matches(approval, name=decided_by, user=user):
            raise ApprovalNotAllowedError(f"'{decided_by}' is not one of this step's approvers.")
        if any(d["decidedBy"].lower() == decided_by.lower() for d in approval.decisions):
            raise RunStateError(f"'{decided_by}' has already decided.")
        approval.decisions = [*approval.decisions, {"approved": approved, "comment": comment,
                                                    "decidedBy": decided_by,
                                                    "at": timezone.now().isoformat(),
                                                    # who acted (a client may decide for a user)
                                                    "actor": current_actor()}]
        approvals = sum(1 for d in approval.decisions if d["approved"])
        if approved and approvals < approval.required_approvals:
            approval.save(update_fields=["decisions"])
            return approval
        approval.status = ApprovalRequest.Status.APPROVED if approved else ApprovalRequest.Status.REJECTED
        approval.decided_at = timezone.now()
        approval.save(update_fields=["decisions", "status", "decided_at"])
        output = {"approved": approved,
                  "comments": [d["comment"] for d in approval.decisions if d["comment"]],
                  "decidedBy": [d["decidedBy"] for d in approval.decisions]}
        get_store().resume(approval.step_run_id, Outcome(
            "completed", output=output,
            logs=[{"message": f"{'approved' if approved else 'rejected'} by {decided_by}"}]))
    return approval


def approvals_expire(now=None) -> int:
    """Time out pending approvals past their deadline: onTimeout, else the step fails."""
    now = now or timezone.now()
    expired = 0
    for approval in ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING,
                                                   deadline__lt=now).select_related("run"):
        with transaction.atomic():
            if not ApprovalRequest.objects.filter(pk=approval.pk, status=ApprovalRequest.Status.PENDING
                                                  ).update(status=ApprovalRequest.Status.TIMED_OUT):
                continue
            step = graph_for(approval.run.version_id).steps[approval.step_run.step_id]
            on_timeout = step.config.get("onTimeout")
            log = [{"message": "approval timed out"}]
            outcome = (Outcome("completed", output={"approved": False, "timedOut": True, "comments": [],
                                                    "decidedBy": []}, targets=[on_timeout], logs=log)
                       if on_timeout else
                       Outcome.failed("The approval timed out with no decision.", code="approval_timeout",
                                      logs=log))
            get_store().resume(approval.step_run_id, outcome)
            expired += 1
    return expired
