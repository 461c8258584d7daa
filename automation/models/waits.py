"""What a waiting `wait` or `waitForEvent` step waits for, as an index the wake-ups and
the event dispatch read cheaply (docs/user-guide/waits.md). The step run's own state
holds the same facts for people (`waitingFor`); this row exists only while it waits and
is written and deleted by the run store, in the transactions that change the step."""

from django.db import models


class StepWait(models.Model):
    step_run = models.OneToOneField("StepRun", primary_key=True, on_delete=models.CASCADE,
                                    related_name="wait")
    run = models.ForeignKey("Run", on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=100, blank=True, default="",
                                  help_text="The event a waitForEvent step waits for; empty "
                                            "for a wait for time.")
    condition = models.TextField(blank=True, default="")
    since = models.DateTimeField(help_text="When the step began to wait.")
    due_at = models.DateTimeField(db_index=True,
                                  help_text="When the wait ends: its time, or the timeout.")

    class Meta:
        indexes = [models.Index(fields=["event_type"], name="stepwait_event_type",
                                condition=~models.Q(event_type=""))]

    def __str__(self) -> str:
        return f"step run {self.step_run_id} waits for {self.event_type or 'time'}"
