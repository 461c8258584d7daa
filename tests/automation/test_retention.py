"""Retention: what `prune` deletes and what it keeps, the dry run, the chunks."""

import importlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule, Task

from automation.models import (
    ApprovalRequest,
    Batch,
    InboundDelivery,
    Run,
    StepRun,
    WebhookDelivery,
    WebhookSubscription,
)
from automation.services.processes import process_save
from automation.services.retention import prune, prune_counts
from automation.store import get_store
from entities.models import EntityEvent

pytestmark = pytest.mark.django_db
OLD = timezone.now() - timedelta(days=40)
NEW = timezone.now() - timedelta(days=1)


@pytest.fixture
def process():
    return process_save(slug="kept", name="Kept", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})


def a_run(process, status: str, at, *, steps: int = 2, **fields) -> Run:
    """A run and its step runs as the store leaves them, created and finished at `at`."""
    finished = at if status in Run.FINISHED else None
    run = Run.objects.create(process=process, version=process.current_version, status=status,
                             finished_at=finished, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=at)
    for i in range(steps):
        StepRun.objects.create(run=run, step_id=f"s{i}", step_type="function",
                               status=status, logs=[{"message": "x"}])
    return run


def an_event(at, *, dispatched: bool = True) -> EntityEvent:
    event = EntityEvent.objects.create(type="thing.happened",
                                       dispatched_at=at if dispatched else None)
    EntityEvent.objects.filter(pk=event.pk).update(created_at=at)
    return event


def test_finished_runs_past_retention_go_with_their_steps_and_approvals(process):
    old = a_run(process, Run.Status.COMPLETED, OLD)
    failed = a_run(process, Run.Status.FAILED, OLD)
    ApprovalRequest.objects.create(run=old, step_run=old.steps.first())
    young = a_run(process, Run.Status.COMPLETED, NEW)
    deleted = prune()
    assert deleted["runs"] == 2 and deleted["steps"] == 4
    assert set(Run.objects.values_list("pk", flat=True)) == {young.pk}
    assert not StepRun.objects.filter(run_id__in=[old.pk, failed.pk]).exists()
    assert not ApprovalRequest.objects.exists()


def test_an_unfinished_run_keeps_its_steps_its_event_and_its_inbound_delivery(process):
    event = an_event(OLD)
    live = {status: a_run(process, status, OLD, event=event if status == "waiting" else None)
            for status in (Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING)}
    InboundDelivery.objects.create(process=process, delivery_id="d1", run=live["running"])
    InboundDelivery.objects.filter(delivery_id="d1").update(received_at=OLD)
    assert prune()["runs"] == 0
    assert Run.objects.count() == 3 and StepRun.objects.count() == 6
    assert EntityEvent.objects.filter(pk=event.pk).exists()
    assert InboundDelivery.objects.filter(delivery_id="d1").exists()


def test_events_go_when_dispatched_old_and_no_run_points_at_them(process):
    gone, undispatched, young = an_event(OLD), an_event(OLD, dispatched=False), an_event(NEW)
    of_an_old_run = an_event(OLD)
    a_run(process, Run.Status.COMPLETED, OLD, event=of_an_old_run)
    deleted = prune()
    assert deleted["events"] == 2  # the old run went first, then its event
    kept = set(EntityEvent.objects.values_list("pk", flat=True))
    assert kept == {undispatched.pk, young.pk} and gone.pk not in kept


def test_deliveries_and_task_results(process):
    subscription = WebhookSubscription.objects.create(url="https://example.com/h", events=[],
                                                      secret_encrypted="x")
    for status in WebhookDelivery.Status.values:
        WebhookDelivery.objects.create(subscription=subscription, event="e", payload={},
                                       status=status)
    WebhookDelivery.objects.update(created_at=OLD)
    finished = a_run(process, Run.Status.COMPLETED, NEW)
    InboundDelivery.objects.create(process=process, delivery_id="old", run=finished)
    InboundDelivery.objects.create(process=process, delivery_id="new")
    InboundDelivery.objects.filter(delivery_id="old").update(received_at=OLD)
    for name, stopped in (("old", OLD), ("new", NEW)):
        Task.objects.create(id=name, name=name, func="f", started=stopped, stopped=stopped,
                            success=True)
    deleted = prune()
    assert (deleted["webhook_deliveries"], deleted["inbound_deliveries"]) == (2, 1)
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["pending"]
    assert list(InboundDelivery.objects.values_list("delivery_id", flat=True)) == ["new"]
    assert deleted["task_results"] == 1 and list(Task.objects.values_list("id", flat=True)) == ["new"]


def test_a_batch_still_going_keeps_its_runs(process, order_type):
    batch = Batch.objects.create(entity_type=order_type, process=process,
                                 status=Batch.Status.RUNNING)
    a_run(process, Run.Status.COMPLETED, OLD, batch=batch)
    assert prune()["runs"] == 0
    Batch.objects.update(status=Batch.Status.COMPLETED)
    assert prune()["runs"] == 1


def test_retention_zero_keeps_a_kind_forever(process, settings):
    settings.ENTITYFLOW_RETENTION_DAYS = {"runs": 0}
    a_run(process, Run.Status.COMPLETED, OLD)
    assert prune()["runs"] == 0 and Run.objects.count() == 1


def test_runs_are_deleted_in_chunks_from_a_cursor(process):
    for i in range(5):
        a_run(process, Run.Status.COMPLETED, OLD + timedelta(seconds=i))
    a_run(process, Run.Status.RUNNING, OLD - timedelta(seconds=1))  # first in order, kept
    store, chunks, after = get_store(), [], None
    while True:
        pruned = store.prune_finished(timezone.now() - timedelta(days=30), chunk=2, after=after)
        chunks.append((pruned.scanned, pruned.runs))
        if pruned.done:
            break
        after = pruned.cursor
    assert chunks == [(2, 1), (2, 2), (2, 2), (0, 0)]
    assert list(Run.objects.values_list("status", flat=True)) == ["running"]


def test_prune_command_dry_run_counts_and_deletes_nothing(process):
    a_run(process, Run.Status.COMPLETED, OLD, steps=3)
    an_event(OLD)
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert "runs: 1 would be deleted (kept 30 days)" in out.getvalue()
    assert "steps: 3 would be deleted" in out.getvalue()
    assert "events: 1 would be deleted" in out.getvalue()
    assert Run.objects.count() == 1 and EntityEvent.objects.count() == 1
    assert prune_counts()["runs"] == 1


def test_prune_command_deletes_in_chunks_with_a_progress_bar(process):
    for _ in range(3):
        a_run(process, Run.Status.COMPLETED, OLD)
    out, err = StringIO(), StringIO()
    call_command("prune", "--chunk", "2", stdout=out, stderr=err)
    assert "runs: 3 deleted" in out.getvalue() and "steps: 6 deleted" in out.getvalue()
    assert "runs [" in err.getvalue() and "3/3" in err.getvalue()
    assert not Run.objects.exists()


def test_the_daily_prune_is_scheduled_once():
    """By its migration (run again here: a flushed test database has lost its rows)."""
    from django.apps import apps

    migration = importlib.import_module("automation.migrations.0006_prune_schedule")
    for _ in range(2):
        migration.add_schedule(apps, None)
    schedule = Schedule.objects.get(name="entityflow-prune")
    assert schedule.func == "automation.tasks.prune" and schedule.schedule_type == Schedule.DAILY


def test_the_daily_task_stops_in_time_and_queues_the_rest(process, monkeypatch, settings):
    from automation import tasks

    for _ in range(3):
        a_run(process, Run.Status.COMPLETED, OLD)
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda name: queued.append(name))
    monkeypatch.setattr(tasks, "PRUNE_TASK_SECONDS", -1)  # out of time after one chunk
    settings.ENTITYFLOW_PRUNE_CHUNK = 2
    assert tasks.prune()["runs"] == 2 and queued == ["automation.tasks.prune"]
    monkeypatch.setattr(tasks, "PRUNE_TASK_SECONDS", 60)
    assert tasks.prune()["runs"] == 1 and queued == ["automation.tasks.prune"]
