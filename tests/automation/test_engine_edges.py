"""Engine behaviour at the edges: retry delays that grow and spread, an approval deadline
with nowhere to go, and cancelling a run whose step is queued but not yet run."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_q.conf import Conf

from automation.engine.executor import execute_step
from automation.models import ApprovalRequest, Run, StepRun
from automation.services.approvals import approvals_expire
from automation.services.runs import run_cancel, run_start

pytestmark = pytest.mark.django_db(transaction=True)

ALWAYS_FAILING = [{"id": "pay", "type": "function", "function": "test.boom",
                   "config": {"retries": 3}}]


@pytest.fixture
def slow_backoff(settings):
    """Real-sized delays, none waited for inline: each retry waits for its due time."""
    settings.ENTITYFLOW_RETRY_BASE_SECONDS = 10.0
    settings.ENTITYFLOW_RETRY_MAX_SECONDS = 600.0
    settings.ENTITYFLOW_INLINE_BACKOFF_MAX_SECONDS = 0


def test_retry_delays_grow_exponentially_with_jitter(make_process, calls, slow_backoff):
    process = make_process(ALWAYS_FAILING)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        run, _ = run_start(process=process, trigger={"type": "manual"})
        step_run = StepRun.objects.get(run=run)
        delays = []
        while step_run.status == StepRun.Status.PENDING:
            assert step_run.not_before is not None
            delays.append((step_run.not_before - timezone.now()).total_seconds())
            execute_step(step_run.pk)  # a doorbell before the due time runs nothing
            assert len(calls) == len(delays)
            clock.move_to(step_run.not_before + timedelta(milliseconds=1))
            execute_step(step_run.pk)
            step_run.refresh_from_db()
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and step_run.attempt == 4 and len(calls) == 4
    assert len(delays) == 3
    for attempt, delay in enumerate(delays, start=1):  # base·2^(n-1), scaled by 50–100 %
        assert 10 * 2 ** (attempt - 1) * 0.5 <= delay <= 10 * 2 ** (attempt - 1)


def test_retry_delays_are_spread_by_jitter(make_process, slow_backoff):
    """Many runs failing at once must not all come back at the same moment."""
    process = make_process(ALWAYS_FAILING)
    with time_machine.travel(timezone.now(), tick=False):
        now = timezone.now()
        for _ in range(8):
            run_start(process=process, trigger={"type": "manual"})
        due = {(s.not_before - now).total_seconds() for s in StepRun.objects.all()}
    assert len(due) >= 6
    assert all(5.0 <= d <= 10.0 for d in due)


def test_an_approval_deadline_without_on_timeout_fails_the_run(make_process, calls):
    process = make_process([
        {"id": "ask", "type": "human", "next": "done",
         "config": {"approvers": ["manager@example.com"], "timeout": 3600000}},
        {"id": "done", "type": "function", "function": "test.record"}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING

    assert approvals_expire(now=timezone.now() + timedelta(minutes=59)) == 0
    assert approvals_expire(now=timezone.now() + timedelta(hours=1, seconds=1)) == 1
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "approval_timeout" and run.error["step"] == "ask"
    assert "timed out" in run.error["message"]
    assert ApprovalRequest.objects.get(run=run).status == ApprovalRequest.Status.TIMED_OUT
    assert calls == []  # the step after the approval never ran


@pytest.fixture
def queued(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)


def test_cancelling_a_run_stops_its_queued_step(make_process, calls, queued):
    process = make_process([{"id": "a", "type": "function", "function": "test.record"}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    step_run = StepRun.objects.get(run=run)
    assert step_run.status == StepRun.Status.PENDING  # its task waits in the queue

    run_cancel(run=run)
    execute_step(step_run.pk)  # the worker picks up the doorbell after the cancel

    run.refresh_from_db()
    step_run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and run.error["code"] == "cancelled"
    assert step_run.status == StepRun.Status.CANCELLED
    assert calls == []
