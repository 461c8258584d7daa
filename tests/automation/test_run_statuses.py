"""The statuses a run goes through (docs/rest-api.md#run-statuses): pending until its
first step is claimed, running, waiting on a human or a timer, then an end."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import Run, StepRun
from automation.services.runs import run_cancel, run_start
from automation.store import get_store
from automation.store.doorbell import ring

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_waits_on_a_retry_timer_and_runs_again_when_it_is_claimed(make_process, settings,
                                                                       calls):
    settings.ENTITYFLOW_RETRY_BASE_SECONDS = 120  # longer than a worker waits inline
    settings.ENTITYFLOW_RETRY_MAX_SECONDS = 120
    process = make_process([{"id": "pay", "type": "function", "function": "test.flaky",
                             "config": {"retries": 2, "params": {"failures": 1}}}])
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={})
    run.refresh_from_db()
    step = StepRun.objects.get(run=run)
    assert (run.status, step.status) == (Run.Status.WAITING, StepRun.Status.PENDING)
    assert step.not_before > timezone.now() + timedelta(seconds=30)
    assert run.started_at is not None

    StepRun.objects.filter(pk=step.pk).update(not_before=timezone.now())  # the timer ran out
    ring(step.pk)
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"calls": 2})


def test_a_claim_starts_a_pending_run_once(make_process, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}  # nothing runs the step
    process = make_process([{"id": "a", "type": "function", "function": "noop"}])
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={})
    run.refresh_from_db()
    assert (run.status, run.started_at) == (Run.Status.PENDING, None)

    claim = get_store().claim(StepRun.objects.get(run=run).pk, lease_seconds=60)
    assert claim is not None and claim.step_run.run.status == Run.Status.RUNNING
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.started_at is not None
    assert claim.step_run.run.started_at == run.started_at


def test_a_pending_run_can_be_cancelled(make_process, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    process = make_process([{"id": "a", "type": "function", "function": "noop"}])
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={})
    run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert StepRun.objects.get(run=run).status == StepRun.Status.CANCELLED
    assert get_store().claim(StepRun.objects.get(run=run).pk, lease_seconds=60) is None
