"""Outbound webhook subscriptions and their delivery log."""

import uuid

from django.db import models


class WebhookSubscription(models.Model):
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="e.g. workflow.completed, workflow.failed")
    secret_encrypted = models.TextField(editable=False)
    active = models.BooleanField(default=True)
    owner = models.CharField(max_length=200, blank=True, help_text="API client key or username.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The trace of the run it tells of (docs/operating.md#tracing): every attempt sends it
    # as traceparent. Empty while tracing is off.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.subscription.url}"
