"""Work that a fault interrupts: a worker that dies right after a step's side effect, and a
broker that is down while runs are started. In-process and deterministic (both lanes);
the same faults at random, under load, are in test_load_and_chaos.py."""

from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from automation import tasks
from automation.engine.executor import execute_step
from automation.functions import function
from automation.models import Run, StepRun
from automation.services import sweeper
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store import doorbell
from entities.models import EntityEvent
from entities.services import entity_create, entity_transition
from tests.reliability import worker_functions
from tests.reliability.support import flow_type, on_status

pytestmark = pytest.mark.django_db(transaction=True)

DIES = [{"id": "charge", "type": "function", "function": "reliability.die_after_effect"}]
COUNT = [{"id": "only", "type": "function", "function": "reliability.count"}]


@pytest.fixture(autouse=True)
def _clear_calls():
    worker_functions.CALLS.clear()
    yield


def lease_runs_out(step: StepRun) -> None:
    expired = timezone.now() - timedelta(seconds=1)
    StepRun.objects.filter(pk=step.pk).update(lease_expires_at=expired)


def die_once(queued, monkeypatch) -> tuple[Run, StepRun]:
    """Run a step whose worker dies right after the side effect, then let the sweeper
    hand it to another worker once the lease has run out."""
    monkeypatch.setattr(sweeper, "send_step", lambda step_run_id, **_: queued.append(step_run_id))
    process = process_save(slug="charge", name="Charge", definition={"steps": DIES})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    step = StepRun.objects.get(run=run)
    with pytest.raises(worker_functions.WorkerDied):
        execute_step(step.pk)
    assert StepRun.objects.get(pk=step.pk).status == StepRun.Status.RUNNING  # nobody reported
    lease_runs_out(step)
    assert sweeper.steps_sweep(pending_grace_seconds=60) == 1
    execute_step(queued[-1])
    run.refresh_from_db()
    return run, StepRun.objects.get(pk=step.pk)


def test_a_step_whose_worker_died_runs_again_and_the_run_completes(queued, monkeypatch):
    run, step = die_once(queued, monkeypatch)
    assert run.status == Run.Status.COMPLETED, run.error
    assert step.attempt == 2 and "lost its worker (attempt 1)" in str(step.logs)
    # At least once: the side effect did happen twice. Only an outside system that
    # recognises the repeat (the idempotency key, below) can make that harmless.
    assert [s for _, s, _ in worker_functions.CALLS] == ["charge", "charge"]


def test_a_step_run_again_after_its_worker_died_sends_the_same_idempotency_key(
        queued, monkeypatch):
    die_once(queued, monkeypatch)
    first, second = (key for _, _, key in worker_functions.CALLS)
    assert first == second and first.endswith(":1")  # the key of the attempt that was lost


@function("lost-work.dies_once")
def dies_once(ctx):
    """A step continued in its worker, which dies right after it ran, on its first attempt."""
    worker_functions.CALLS.append((ctx.run_id, ctx.step_id, ctx.idempotency_key))
    if ctx.attempt == 1:
        raise worker_functions.WorkerDied()
    return {"attempt": ctx.attempt}


def test_a_step_continued_by_a_worker_that_died_is_taken_back(queued, monkeypatch):
    """The worker writes the successor already claimed by itself (no doorbell); when it
    dies running it, the claim's lease runs out and the sweeper hands the step on."""
    monkeypatch.setattr(sweeper, "send_step", lambda step_run_id, **_: queued.append(step_run_id))
    process = process_save(slug="inline", name="Inline", definition={"steps": [
        {"id": "first", "type": "function", "function": "noop", "next": "second"},
        {"id": "second", "type": "function", "function": "lost-work.dies_once"}]})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    first = StepRun.objects.get(run=run, step_id="first")
    with pytest.raises(worker_functions.WorkerDied):
        execute_step(first.pk)
    second = StepRun.objects.get(run=run, step_id="second")
    assert second.pk not in queued  # continued in the worker, never rung
    assert (second.status, second.attempt) == (StepRun.Status.RUNNING, 1)
    assert StepRun.objects.get(pk=first.pk).status == StepRun.Status.COMPLETED  # committed first
    assert sweeper.steps_sweep(pending_grace_seconds=60) == 0  # its lease still holds
    lease_runs_out(second)
    assert sweeper.steps_sweep(pending_grace_seconds=60) == 1
    execute_step(queued[-1])
    run.refresh_from_db()
    second.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert second.attempt == 2 and "lost its worker (attempt 1)" in str(second.logs)
    first_key, second_key = (key for _, _, key in worker_functions.CALLS)
    assert first_key == second_key


class BrokerDown:
    """What django-q2's Redis broker does while Redis restarts."""

    list_key = "down"

    def enqueue(self, task):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")


@pytest.fixture
def broker_down(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(doorbell, "_broker", lambda: BrokerDown())


def sweep_when_back(settings, monkeypatch) -> None:
    """The broker is back; the scheduled sweeper rings for every step left pending."""
    monkeypatch.undo()
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    tasks.sweep_all()  # events
    sweeper.steps_sweep(pending_grace_seconds=0)


def test_saves_during_a_broker_outage_start_their_runs_later(broker_down, settings, monkeypatch):
    entity_type = flow_type()
    on_status("on-received", entity_type, "received", steps=COUNT)
    entities = [entity_create(entity_type=entity_type, reference=f"B-{n}") for n in range(3)]
    for entity in entities:
        entity_transition(entity=entity, to_status="received")  # no error for the saver
    assert Run.objects.count() == 3
    assert not EntityEvent.objects.filter(dispatched_at__isnull=True).exists()
    assert set(StepRun.objects.values_list("status", flat=True)) == {StepRun.Status.PENDING}
    sweep_when_back(settings, monkeypatch)
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.COMPLETED}
    assert len(worker_functions.CALLS) == 3


def test_published_events_and_new_cases_are_accepted_during_a_broker_outage(
        api, case_type, broker_down, settings, monkeypatch):
    process_save(slug="on-ping", name="On ping", definition={"steps": COUNT, "triggers": [
        {"type": "event", "config": {"eventType": "partner.ping"}}]})
    answer = api.post("/api/events", {"type": "partner.ping", "data": {"n": 1}}, format="json")
    assert answer.status_code == 202, answer.content
    assert len(answer.json()["executions"]) == 1
    assert api.post("/api/cases", {"firstName": "Ada"}, format="json").status_code == 201
    sweep_when_back(settings, monkeypatch)
    assert Run.objects.get(process__slug="on-ping").status == Run.Status.COMPLETED


def test_an_api_trigger_during_a_broker_outage_is_accepted_and_runs_later(
        api, broker_down, settings, monkeypatch):
    process_save(slug="charge", name="Charge", definition={"steps": COUNT})
    answer = api.post("/api/workflow-definitions/charge/trigger", {"input": {}}, format="json",
                      headers={"Idempotency-Key": "outage-1"})
    assert Run.objects.count() == 1  # committed either way
    assert answer.status_code == 202, (answer.status_code, answer.content[:200])
    sweep_when_back(settings, monkeypatch)
    assert Run.objects.get().status == Run.Status.COMPLETED


def test_the_sweeper_rings_for_a_waiting_step_once_per_grace_period(queued, monkeypatch):
    monkeypatch.setattr(sweeper, "send_step", lambda step_run_id, **_: queued.append(step_run_id))
    process = process_save(slug="backlog", name="Backlog", definition={"steps": COUNT})
    runs = [run_start(process=process, trigger={"type": "manual"})[0] for _ in range(5)]
    queued.clear()  # the first doorbells are in the queue, behind a backlog
    StepRun.objects.filter(run__in=runs).update(
        created_at=timezone.now() - timedelta(seconds=90))
    rung = [sweeper.steps_sweep(pending_grace_seconds=60) for _ in range(3)]
    assert rung[0] == 5  # nothing has picked them up for longer than the grace: ring again
    assert rung[1:] == [0, 0], rung  # ... but not again and again, seconds later


def test_the_sweeper_rings_only_as_many_waiting_steps_as_the_queue_cannot_hold(
        queued, monkeypatch):
    """Behind a backlog older than the grace period the queue still holds doorbells:
    ringing every waiting step again on every pass would bury the workers. Once the
    queue is empty (a broker restart loses it), the rest are rung."""
    monkeypatch.setattr(sweeper, "send_step", lambda step_run_id, **_: queued.append(step_run_id))
    process = process_save(slug="deep-backlog", name="Backlog", definition={"steps": COUNT})
    runs = [run_start(process=process, trigger={"type": "manual"})[0] for _ in range(5)]
    StepRun.objects.filter(run__in=runs).update(
        created_at=timezone.now() - timedelta(seconds=90))
    broker = doorbell._broker()
    broker.purge_queue()
    for _ in range(3):  # three doorbells still wait in the queue
        broker.enqueue("a doorbell behind the backlog")
    try:
        assert sweeper.steps_sweep(pending_grace_seconds=60) == 2
    finally:
        broker.purge_queue()  # the broker restarts and loses its queue
    assert sweeper.steps_sweep(pending_grace_seconds=60) == 3


def test_a_step_whose_workers_die_twice_before_running_it_keeps_the_first_key(
        queued, monkeypatch):
    """Killed right after the claim, twice: the attempt that was lost first is the one
    whose key the outside may have seen, so the third attempt sends it again."""
    from automation.store import get_store

    monkeypatch.setattr(sweeper, "send_step", lambda step_run_id, **_: queued.append(step_run_id))
    process = process_save(slug="count-twice", name="Count", definition={"steps": COUNT})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    step = StepRun.objects.get(run=run)
    for attempt in (1, 2):  # each worker claims the step and dies before reporting
        assert get_store().claim(step.pk, lease_seconds=60).step_run.attempt == attempt
        lease_runs_out(step)
    assert sweeper.steps_sweep(pending_grace_seconds=60) == 1
    execute_step(queued[-1])
    [(_, _, key)] = worker_functions.CALLS
    assert key.endswith(":1")
    assert Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED
