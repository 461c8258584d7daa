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

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Approval for {self.step_run.step_id} ({self.status})"
