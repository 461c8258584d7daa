"""Thin django-q2 adapters: take ids, call one service. Tasks are named by their dotted
path (`automation.tasks.step_execute`), so nothing below this layer imports it."""

from automation.engine.chunks import execute_chunk
from automation.engine.executor import execute_step
from automation.services.approvals import approvals_expire, approvals_nudge
from automation.services.batches import batch_fanout_run, batches_sweep
from automation.services.debounce import debounce_fire as debounce_fire_run
from automation.services.debounce import debounces_sweep
from automation.services.dedupe import flow_marks_prune
from automation.services.retention import prune as retention_prune
from automation.services.sweeper import steps_sweep, subprocesses_sweep
from automation.services.waits import wait_wake as waits_wake
from automation.services.waits import waits_due_sweep
from automation.services.webhooks import deliveries_due_sweep
from automation.triggers.schedules import sync_schedules
from entities.db import outage
from entities.outbox import events_sweep


def step_execute(step_run_id: int) -> None:
    # A database that refuses connections holds this doorbell (and so the worker) until
    # it answers again, instead of failing one doorbell after another (entities.db.outage).
    outage.through(lambda: execute_step(step_run_id), what=f"step run {step_run_id}")


def steps_execute(step_run_ids: list[int], priority: str = "normal") -> None:
    """A chunk doorbell (store.doorbell.enqueue_chunk): each step as step_execute runs it."""
    execute_chunk(step_run_ids, priority, execute=step_execute)


def wait_wake(step_run_id: int) -> None:
    """A waiting `wait` / `waitForEvent` step's scheduled wake (store.waits)."""
    waits_wake(step_run_id)


def sweep() -> dict:
    return sweep_all()


def sweep_all() -> dict:
    """One pass over everything a crash or a lost task can leave behind
    (docs/reliability.md): events, steps, approvals, webhooks, schedules, batches, waits."""
    return {"events": events_sweep(), "steps": steps_sweep(), "approvals": approvals_expire(),
            "approvalNudges": approvals_nudge(),
            "webhooks": deliveries_due_sweep(), "schedules": sync_schedules(),
            "batches": batches_sweep(), "waits": waits_due_sweep(),
            "subprocesses": subprocesses_sweep(), "debounces": debounces_sweep(),
            "flowMarks": flow_marks_prune()}


def debounce_fire(mark_id: int) -> None:
    debounce_fire_run(mark_id)


def batch_fanout(batch_id: str) -> None:
    batch_fanout_run(batch_id)


# The daily prune stops within the cluster's task timeout (Q_TIMEOUT, 120 s by default)
# and, when work is left, queues itself again: a first prune of years of rows goes on in
# steps instead of being killed mid-way.
PRUNE_TASK_SECONDS = 60


def prune() -> dict:
    """The daily retention prune (migration 0006 schedules it)."""
    deleted = retention_prune(seconds=PRUNE_TASK_SECONDS)
    if deleted["more"]:
        from django_q.tasks import async_task

        async_task("automation.tasks.prune")
    return deleted
