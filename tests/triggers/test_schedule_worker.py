"""A schedule trigger fired by django-q2's scheduler and run by a real qcluster worker:
outside the synchronous test queue, `fire` runs in another process after the scheduler
committed, and must still re-arm the row exactly once."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from automation.definitions.schedule_config import trigger_next_occurrence
from automation.models import Run
from automation.services.processes import process_save
from automation.triggers.schedules import FIRE
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONFIG = {"cron": "0 9 * * *", "timezone": "America/New_York"}


def test_a_due_schedule_runs_in_the_worker_and_is_rearmed_once(settings, monkeypatch, tmp_path):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)  # this process enqueues; the worker runs
    process = process_save(slug="nightly", name="Nightly", definition={
        "steps": [{"id": "echo", "type": "function", "function": "noop"}],
        "triggers": [{"type": "schedule", "config": CONFIG}]})
    due = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    Schedule.objects.filter(func=FIRE).update(next_run=due)  # 09:00 has just arrived

    worker = Worker(tmp_path / "worker.log")
    try:
        scheduler(broker=get_broker())
        run = wait_for(lambda: Run.objects.filter(process=process, status=Run.Status.COMPLETED)
                       .first(), 60, message="the scheduled run to complete")
        row = wait_for(lambda: Schedule.objects.filter(func=FIRE, repeats=1,
                                                       next_run__gt=due).first(),
                       30, message="the schedule to be re-armed")
        scheduler(broker=get_broker())  # not due any more: starts nothing
    finally:
        worker.stop()
    assert Run.objects.filter(process=process).count() == 1
    assert run.trigger["scheduledFor"] == due.isoformat()
    assert Schedule.objects.filter(func=FIRE).count() == 1
    assert row.next_run == trigger_next_occurrence(CONFIG, after=due)
