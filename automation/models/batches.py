"""Batches: one process over many entities, fanned out in the worker in chunks."""

import uuid

from django.conf import settings
from django.db import models


class Batch(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        FANNING_OUT = "fanning_out"
        RUNNING = "running"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity_type = models.ForeignKey("entities.EntityType", on_delete=models.CASCADE, related_name="+")
    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="batches")
    filter = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    created_runs = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=64, blank=True, help_text="Last entity id fanned out.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"{self.process.slug} over {self.total} {self.entity_type.key}"
