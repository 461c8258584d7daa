"""Human approval requests raised by `human` steps."""

from django.db import models


class ApprovalRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        TIMED_OUT = "timed_out"
        CANCELLED = "cancelled"

    run = models.ForeignKey("Run", on_delete=models.CASCADE, related_name="approvals")
    step_run = models.OneToOneField("StepRun", on_delete=models.CASCADE, related_name="approval")
    approvers = models.JSONField(
        default=list, help_text="Usernames, emails, or group:<name> entries allowed to decide."
    )
    required_approvals = models.PositiveIntegerField(default=1)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    decisions = models.JSONField(default=list, blank=True)
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # What the person enters (config.form, a JSON Schema) and what the decision is bound
    # to (docs/user-guide/human-tasks.md): the covered entity fields as the approver saw them.
    form = models.JSONField(null=True, blank=True)
    fields = models.JSONField(null=True, blank=True, help_text="Covered entity fields; null: all.")
    snapshot = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    changes = models.JSONField(default=list, blank=True,
                               help_text="What changed when the request was last re-issued.")
    history = models.JSONField(default=list, blank=True,
                               help_text="Earlier versions, invalidated by a change to their data.")
    reject_quorum = models.PositiveIntegerField(default=1)
    escalate_to = models.JSONField(default=list, blank=True)
    remind_at = models.DateTimeField(null=True, blank=True, db_index=True)
    escalate_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    link_expiry_seconds = models.PositiveIntegerField(default=48 * 3600)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Approval for {self.step_run.step_id} ({self.status})"


class ApprovalLinkUse(models.Model):
    """A one-click link that was used: the unique nonce makes every link work once."""

    nonce = models.CharField(max_length=64, unique=True)
    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE,
                                 related_name="link_uses")
    used_by = models.CharField(max_length=200)
    used_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Link used by {self.used_by} for approval {self.approval_id}"
