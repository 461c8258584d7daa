"""Batches: one process over many entities, fanned out in the worker in chunks."""

import uuid

from django.conf import settings
from django.db import models

from automation.models.runs import Priority


class Batch(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        FANNING_OUT = "fanning_out"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        ENTITIES = "entities"  # the process over every entity the filter matches
        RERUNS = "reruns"  # a re-run of every run the filter matches

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ENTITIES)
    entity_type = models.ForeignKey("entities.EntityType", null=True, blank=True,
                                    on_delete=models.CASCADE, related_name="+")
    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="batches")
    filter = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    created_runs = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=64, blank=True,
                              help_text="Last entity (or run) id fanned out.")
    rate_per_second = models.FloatField(null=True, blank=True,
                                        help_text="At most this many starts a second.")
    priority = models.CharField(
        max_length=6, blank=True, choices=Priority.choices,
        help_text="The priority of the batch's runs; blank: the process's.")
    rerun = models.JSONField(default=dict, blank=True,
                             help_text="A re-run batch: fromStep, version, repeatEffects.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the fan-out committed its last chunk and rang for its steps.")
    finished_at = models.DateTimeField(null=True, blank=True)
    # The fan-out task working on the batch holds it until `fanout_until`, renewing as it
    # goes: a second delivery of the task leaves it alone, and once it has run out (its
    # worker died) the sweeper starts the fan-out again from the cursor.
    fanout_token = models.UUIDField(null=True, blank=True, editable=False)
    fanout_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="The fan-out task holds the batch until then; after it, the sweeper "
                  "starts the fan-out again from the cursor.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        if self.kind == self.Kind.RERUNS:
            return f"{self.process.slug}: re-run of {self.total} runs"
        return f"{self.process.slug} over {self.total} {self.entity_type.key}"
