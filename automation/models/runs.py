"""Runs of a process and the runs of their steps: the database is the truth."""

import uuid

from django.conf import settings
from django.db import models


class Priority(models.TextChoices):
    """Which doorbells a worker takes first (docs/user-guide/priority.md): a process, a
    trigger or a batch sets it; the run and each of its step runs record it."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Parameters(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="+")
    parameters = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "parameters"

    def __str__(self) -> str:
        return f"Parameters {self.pk}"


class Run(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Every index of this table is written by each run's start and, since `status` is
    # indexed, by each change of its status: no column has an index another index already
    # serves, and a column that is empty for most runs is indexed only where it is set
    # (Meta.indexes; docs/performance.md, "Indexes a run writes").
    process = models.ForeignKey("ApiProcess", on_delete=models.PROTECT, related_name="runs",
                                db_index=False)  # (process, status, created_at) leads with it
    version = models.ForeignKey("ProcessVersion", on_delete=models.PROTECT, related_name="runs")
    trigger = models.JSONField(default=dict, blank=True)
    event = models.ForeignKey(
        "entities.EntityEvent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    entity = models.ForeignKey(  # run_entity_recent leads with it
        "entities.Entity", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        db_index=False,
    )
    batch = models.ForeignKey(
        "Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        db_index=False,
    )
    input = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.NORMAL)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # unique by Meta.constraints: a unique field would also get a pattern index (LIKE)
    # on PostgreSQL, and nothing searches keys by pattern
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns",
        db_index=False,
        help_text="The run this one re-runs (a retry or a re-run from a chosen step).")
    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="subruns",
        db_index=False,
        help_text="The run whose `process` step started this one (a sub-process).")
    parent_step_run = models.ForeignKey(
        "StepRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="subruns",
        db_index=False,
        help_text="The `process` step run that waits for this run's end.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", db_index=False,
    )
    concurrency_key = models.CharField(  # noqa: DJ001 - NULL: the process sets no concurrency
        max_length=300, null=True, blank=True,
        help_text="The key the process's concurrency limit counts this run under.")
    pending_reason = models.CharField(  # noqa: DJ001 - NULL: the run holds or held a slot
        max_length=300, null=True, blank=True,
        help_text="Why a pending run waits (a concurrency limit); empty once it may start.")
    # The run's trace (docs/operating.md#tracing): its own span as a W3C traceparent, so a
    # step run by any worker later joins it, and the caller's span it is a child of.
    # Empty while tracing is off.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    trace_parent_id = models.CharField(max_length=16, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["idempotency_key"],
                                               name="run_idempotency_key_unique")]
        indexes = [models.Index(fields=["process", "status", "created_at"]),
                   models.Index(fields=["status"], name="run_status"),
                   # set for some runs only: the others write nothing to these
                   *(models.Index(fields=[name], condition=models.Q(**{f"{name}__isnull": False}),
                                  name=f"run_{name}_set")
                     for name in ("event", "batch", "rerun_of", "parent_run", "parent_step_run",
                                  "created_by")),
                   # the circuit breaker's runs of one entity in the last minute, on every
                   # save that starts a run: without it SQLite counts through every run of
                   # the process (docs/performance.md, save_overhead_one)
                   models.Index(fields=["entity", "created_at"], name="run_entity_recent"),
                   models.Index(fields=["process", "concurrency_key", "status"],
                                condition=models.Q(concurrency_key__isnull=False),
                                name="run_concurrency_active")]

    def __str__(self) -> str:
        return f"{self.process.slug} run {str(self.id)[:8]}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def rerun_ids(self) -> list:
        """The re-runs of this run, oldest first (prefetch `reruns` for many runs)."""
        return [r.pk for r in sorted(self.reruns.all(), key=lambda r: r.created_at)]


class StepRun(models.Model):
    """One execution of one step in one scope (a loop iteration has its own scope)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING, Status.WAITING)

    # As a run's (Run.process): one_step_run_per_scope leads with `run`, the
    # status index is the first column of (status, lease_expires_at), `parent` is set for
    # an agent's tool calls only.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        db_index=False,
        help_text="The step whose execution this is part of (an agent's tool call).")
    step_id = models.CharField(max_length=100)
    step_type = models.CharField(max_length=20)
    scope = models.CharField(max_length=300, blank=True, default="")
    index = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # the run's, copied so a doorbell rung for the row (the sweeper's too) uses its queue
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.NORMAL)
    attempt = models.PositiveIntegerField(default=0)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    logs = models.JSONField(default=list, blank=True)
    state = models.JSONField(
        default=dict, blank=True, help_text="Engine bookkeeping (joins, loops)."
    )
    claim = models.UUIDField(null=True, blank=True)
    key_attempt = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The attempt whose idempotency key a re-run after a lost worker sends again.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    rung_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the sweeper last rang for this step (not the first doorbell).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step_id", "scope"], name="one_step_run_per_scope"
            )
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"]),
                   models.Index(fields=["parent"], condition=models.Q(parent__isnull=False),
                                name="steprun_parent_set")]

    def __str__(self) -> str:
        return f"{self.step_id}{'@' + self.scope if self.scope else ''} ({self.status})"
