"""Flow-control bookkeeping (docs/user-guide/concurrency.md): the row a process's
concurrency key is serialised on, and the marks triggers and POST /api/events keep for
dedupe."""

from django.db import models


class ConcurrencyGate(models.Model):
    """One row per (process, concurrency key) and one per process (key ""): a start and a
    run's end lock it first (PostgreSQL's row lock, SQLite's writer's lock), so the count
    of running runs they read next cannot change under them."""

    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=300)
    touched = models.PositiveBigIntegerField(default=0)
    # A run may be queued behind this gate. Set under the gate's lock whenever a run is
    # queued behind it, cleared under it by a run's end that left nothing queued: a run's
    # end that reads it false under the lock may end without looking for queued runs
    # (PostgreSQL's one-statement end, store.postgresql). A stale true (a queued run
    # cancelled) only sends the next end the general way, which clears it.
    queued = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["process", "key"],
                                               name="one_gate_per_process_key")]

    def __str__(self) -> str:
        return f"gate {self.key or '(process)'} of process {self.process_id}"


class DedupeMark(models.Model):
    """A dedupe key seen in `scope` (a trigger, or POST /api/events) and the run it
    started; a repeat before `expires_at` is answered with that run."""

    scope = models.CharField(max_length=100)
    key = models.CharField(max_length=300)
    run = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    event = models.ForeignKey("entities.EntityEvent", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"],
                                               name="one_dedupe_mark_per_key")]

    def __str__(self) -> str:
        return f"dedupe {self.scope} {self.key}"


class DebounceMark(models.Model):
    """A trigger's debounce for one key (docs/user-guide/concurrency.md#debounce).
    trailing: `owed` while a run is still to start at `due_at` with the latest `event`;
    leading: events before `due_at` are dropped."""

    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="+")
    trigger_id = models.PositiveBigIntegerField()
    key = models.CharField(max_length=300)
    due_at = models.DateTimeField()
    owed = models.BooleanField(default=False)
    event = models.ForeignKey("entities.EntityEvent", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trigger_id", "key"],
                                               name="one_debounce_mark_per_key")]
        indexes = [models.Index(fields=["owed", "due_at"])]

    def __str__(self) -> str:
        return f"debounce trigger {self.trigger_id} {self.key}"
