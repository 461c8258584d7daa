"""What operators control: the idempotency ledger of external effects, and the circuit
breaker of a process with the starts it held (docs/user-guide/operating-runs.md)."""

from django.conf import settings
from django.db import models


class Effect(models.Model):
    """One external effect (a HubSpot write, an upload, a non-safe HTTP call, a webhook
    post, a mail, a SQL execute) and its result, keyed by its effect key. A retry or a
    re-run that reaches the same key is served the stored result instead of calling out.
    Kept as long as the last run that used it (store/pruning.py)."""

    key = models.CharField(max_length=300, unique=True)
    run = models.ForeignKey("Run", on_delete=models.CASCADE, related_name="effects",
                            help_text="The last run that made or was served this effect.")
    step_id = models.CharField(max_length=100)
    scope = models.CharField(max_length=300, blank=True, default="")
    action = models.CharField(max_length=100)
    result = models.JSONField(null=True, blank=True)
    calls = models.PositiveIntegerField(default=1, help_text="How often it was really made.")
    served = models.PositiveIntegerField(default=0, help_text="How often it was served instead.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.key}"


class ProcessBreaker(models.Model):
    """A process's circuit breaker: its threshold overrides, and whether it is paused."""

    process = models.OneToOneField("ApiProcess", on_delete=models.CASCADE, related_name="breaker")
    limits = models.JSONField(default=dict, blank=True,
                              help_text="Overrides of the default thresholds (see the docs).")
    paused_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"breaker of {self.process.slug}"

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


class HeldStart(models.Model):
    """A start that arrived while its process was paused: kept until a person releases
    (starts it) or discards it."""

    class Status(models.TextChoices):
        HELD = "held"
        RELEASED = "released"
        DISCARDED = "discarded"

    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="held_starts")
    entity = models.ForeignKey("entities.Entity", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    event = models.ForeignKey("entities.EntityEvent", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    trigger = models.JSONField(default=dict, blank=True)
    input = models.JSONField(null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    # NULL, not "": a released start hands it to its run, whose unique key is NULL when absent
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.HELD,
                              db_index=True)
    run = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"held start of {self.process.slug} ({self.status})"


class RateBucket(models.Model):
    """One rate-limit bucket shared by every worker (automation/functions/ratelimit.py):
    `tat` is the bucket's theoretical arrival time in seconds since the epoch (the
    generic cell rate algorithm, a token bucket kept as one number), pushed forward by
    every request granted and by a vendor's Retry-After. Written with one statement."""

    key = models.CharField(max_length=200, primary_key=True)
    tat = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return self.key
