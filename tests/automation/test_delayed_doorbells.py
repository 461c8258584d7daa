"""Delayed doorbells (automation.store.delayed, docs/architecture.md#delayed-doorbells): a
task the broker hands out only once it is due, on the broker the settings wire (the ORM
broker on SQLite, Redis when REDIS_URL is set): for a wait's wake, a retry's backoff, a
rate limit's deferral and a trailing debounce's fire."""

import time
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from django_q.signing import SignedPackage

from automation.models import DebounceMark, Priority, Run, StepRun
from automation.services import debounce
from automation.services.runs import run_start
from automation.store.delayed import PROMOTE_EVERY
from automation.store.doorbell import (
    TASK,
    enqueue_later,
    enqueue_step,
    queue_broker,
)
from automation.store.waits import WAKE_TASK
from entities.services import entity_create, entity_update

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(queued_mode):
    """The doorbells' broker, emptied before and after (a Redis queue outlives the test
    database)."""
    broker = queue_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def take(broker) -> list[dict]:
    """What one dequeue of a worker's pusher hands out now, acknowledged."""
    time.sleep(PROMOTE_EVERY)  # the pusher looks at the delayed doorbells this often
    taken = broker.dequeue() or []
    for task_id, _ in taken:
        if task_id is not None:  # the ORM broker's row; Redis pops for good
            broker.acknowledge(task_id)
    return [SignedPackage.loads(package) for _, package in taken]


def test_a_delayed_doorbell_is_handed_out_only_once_due(broker):
    due = timezone.now() + timedelta(seconds=30)
    with transaction.atomic():
        enqueue_later(WAKE_TASK, 7, due)
    assert broker.queue_size() == 0 and broker.delayed_size() == 1
    assert take(broker) == []  # not yet: no worker holds it meanwhile
    with time_machine.travel(due + timedelta(seconds=1), tick=True):
        [task] = take(broker)
    assert (task["func"], task["args"], task["name"]) == (WAKE_TASK, (7,), "wait_wake-7")
    assert take(broker) == [] and broker.delayed_size() == 0  # handed out once


def test_a_rollback_takes_the_delayed_doorbell_back(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_later(WAKE_TASK, 8, timezone.now())
        raise RuntimeError("the step's record failed")
    assert broker.delayed_size() == 0 and take(broker) == []


def test_a_due_delayed_doorbell_joins_its_priority_queue_ahead_of_normal_ones(broker):
    due = timezone.now() + timedelta(seconds=30)
    with transaction.atomic():
        enqueue_step(1, priority=Priority.NORMAL)
        enqueue_step(2, due=due, priority=Priority.HIGH)
    with time_machine.travel(due + timedelta(seconds=1), tick=True):
        first = take(broker)
    assert [task["args"] for task in first][:1] == [(2,)]  # the high queue is taken first
    rest = first[1:] + take(broker)
    assert [task["args"] for task in rest] == [(1,)]


def test_a_retry_is_a_delayed_doorbell_for_its_backoff(broker, make_process, settings, calls):
    from automation.engine.executor import execute_step

    settings.ENTITYFLOW_RETRY_BASE_SECONDS = settings.ENTITYFLOW_RETRY_MAX_SECONDS = 30
    process = make_process([{"id": "a", "type": "function", "function": "test.flaky",
                             "config": {"params": {"failures": 1}, "retries": 2}}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    [doorbell] = take(broker)
    execute_step(doorbell["args"][0])  # what the worker does: the first attempt fails
    step = StepRun.objects.get(run=run)
    assert step.status == StepRun.Status.PENDING and step.not_before > timezone.now()
    assert take(broker) == [] and broker.delayed_size() == 1  # no doorbell before it is due
    with time_machine.travel(step.not_before + timedelta(seconds=1), tick=True):
        [again] = take(broker)
        assert (again["func"], again["args"]) == (TASK, (step.pk,))
        execute_step(step.pk)
    assert Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED


def test_a_trailing_debounce_fires_from_a_delayed_doorbell_without_sleeping(broker,
                                                                           order_type):
    from tests.automation.test_debounce import ORDER, debounced

    process = debounced(order_type, {"windowMs": 60_000})
    order = entity_create(entity_type=order_type, reference="DD-1", data=ORDER)
    for total in (2, 3, 4):
        order = entity_update(entity=order, data={**ORDER, "total": total})
    mark = DebounceMark.objects.get()
    assert take(broker) == []  # nothing before the window's end
    assert broker.delayed_size() == 1  # one doorbell for the burst, at the window's end
    assert debounce.debounce_fire(mark.pk) is False  # taken early: sent again, no sleep
    assert broker.delayed_size() == 2
    with time_machine.travel(mark.due_at + timedelta(seconds=1), tick=True):
        fires = take(broker) + take(broker)
        assert [(task["func"], task["args"]) for task in fires] == [
            (debounce.FIRE_TASK, (mark.pk,))] * 2
        assert debounce.debounce_fire(mark.pk) is True
        assert debounce.debounce_fire(mark.pk) is False  # the second doorbell: nothing owed
    [run] = Run.objects.filter(process=process)
    assert run.input["total"] == 4
