"""Priority (docs/user-guide/priority.md): where a run's priority comes from, that its step
runs carry it, and that the broker hands out the high queue first (the configured
broker: the ORM one on SQLite, Redis on the PostgreSQL lane)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.signing import SignedPackage

from automation.exceptions import DefinitionInvalidError
from automation.functions import function
from automation.models import Run, StepRun
from automation.services.batches import batch_create
from automation.services.runs import run_start
from automation.services.sweeper import steps_sweep
from automation.store import doorbell
from automation.store.queues import PriorityORM, PriorityRedis, queue_key
from automation.triggers.manual import manual_start
from entities.services import entity_create

pytestmark = pytest.mark.django_db

TWO_STEPS = [{"id": "a", "type": "function", "function": "noop", "next": "b"},
             {"id": "b", "type": "function", "function": "noop"}]


def test_a_priority_that_is_not_a_level_is_refused_at_save_with_its_path(make_process):
    with pytest.raises(DefinitionInvalidError) as refused:
        make_process(TWO_STEPS, triggers=[{"type": "manual", "priority": "urgent"}])
    assert refused.value.fields == {
        "triggers[0].priority": ["priority must be one of high, normal, low; got 'urgent'."]}
    from automation.services.processes import process_save

    with pytest.raises(DefinitionInvalidError) as refused:
        process_save(slug="p", name="P", definition={"steps": TWO_STEPS, "priority": 1})
    assert list(refused.value.fields) == ["priority"]


def test_the_trigger_overrides_the_process_and_an_explicit_priority_both(make_process):
    from automation.services.processes import process_save

    process = process_save(slug="p", name="P", definition={
        "steps": TWO_STEPS, "priority": "low",
        "triggers": [{"type": "manual", "priority": "high"}]})
    assert process.current_version.definition["priority"] == "low"
    by_trigger = manual_start(process=process)
    assert by_trigger.priority == "high"
    by_api, _ = run_start(process=process, trigger={"type": "manual", "source": "api"})
    assert by_api.priority == "high"  # a manual start: the first manual trigger's
    by_schedule, _ = run_start(process=process, trigger={"type": "schedule"})
    assert by_schedule.priority == "low"  # no trigger of the definition: the process's
    explicit, _ = run_start(process=process, trigger={"type": "manual"}, priority="normal")
    assert explicit.priority == "normal"
    plain = make_process(TWO_STEPS)
    assert run_start(process=plain, trigger={"type": "manual"})[0].priority == "normal"
    with pytest.raises(ValidationError):
        run_start(process=plain, trigger={"type": "manual"}, priority="urgent")


def test_every_step_run_of_a_run_records_its_priority(make_process,
                                                     django_capture_on_commit_callbacks):
    process = make_process(TWO_STEPS)
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_start(process=process, trigger={"type": "manual"}, priority="high")
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert sorted(run.steps.values_list("step_id", "priority")) == [("a", "high"), ("b", "high")]


def test_a_batch_sets_its_runs_priority(order_type, make_process,
                                        django_capture_on_commit_callbacks):
    process = make_process([{"id": "a", "type": "function", "function": "noop"}],
                           entity_type=order_type)
    for n in range(3):
        entity_create(entity_type=order_type, reference=f"P-{n}",
                      data={"customer": {"name": "Ada"}, "total": 1})
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_create(entity_type=order_type, process=process, priority="low")
    assert set(Run.objects.filter(batch=batch).values_list("priority", flat=True)) == {"low"}
    assert set(StepRun.objects.filter(run__batch=batch).values_list("priority", flat=True)) == {
        "low"}
    with pytest.raises(ValidationError):
        batch_create(entity_type=order_type, process=process, priority="urgent")


def _taken(broker) -> list[int]:
    """The step run ids of every queued doorbell, in the order a worker takes them."""
    ids = []
    while True:
        tasks = broker.dequeue()
        if not tasks:
            return ids
        for ack_id, payload in tasks:
            ids.extend(doorbell.steps_rung(SignedPackage.loads(payload)))
            if ack_id is not None:
                broker.acknowledge(ack_id)


@pytest.fixture
def broker(queued_mode):
    # a broker of its own, as a new worker's: what its dequeue has handed out so far is
    # remembered per broker (store.queues)
    doorbell._broker.cache_clear()
    broker = doorbell._broker()
    assert isinstance(broker, PriorityRedis | PriorityORM)  # what the settings wire
    broker.purge_queue()
    yield broker
    broker.purge_queue()


@pytest.mark.django_db(transaction=True)
def test_the_broker_hands_out_high_then_normal_then_low_in_order(broker):
    doorbell.ring_many([1, 2, 3], priority="low")
    doorbell.ring(4, priority="normal")
    doorbell.ring_many([5, 6], priority="high")
    doorbell.ring(7, priority="low")
    doorbell.ring(8, priority="high")
    assert broker.queue_size() == 8
    assert _taken(broker) == [5, 6, 8, 4, 1, 2, 3, 7]
    assert broker.queue_size() == 0


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_rings_again_on_the_step_runs_own_queue(broker, make_process):
    process = make_process(TWO_STEPS)
    run, _ = run_start(process=process, trigger={"type": "manual"}, priority="high")
    _taken(broker)  # the first doorbell, lost
    StepRun.objects.filter(run=run).update(created_at=timezone.now() - timedelta(minutes=5))
    assert steps_sweep(pending_grace_seconds=60) == 1
    assert _queued(broker, "high") == 1 and broker.queue_size() == 1
    assert _taken(broker) == [StepRun.objects.get(run=run).pk]


def _queued(broker, priority: str) -> int:
    key = queue_key(broker.list_key, priority)
    if isinstance(broker, PriorityRedis):
        return broker.connection.llen(key)
    from django_q.models import OrmQ

    return OrmQ.objects.filter(key=key).count()


def _low_batch_fanned_out(broker, order_type, make_process, entities: int,
                          function: str = "noop"):
    """A low-priority batch of a one-step process over `entities` orders, fanned out with
    only its chunk doorbells left on the broker: (the process, the batch)."""
    from automation.services.batches import batch_fanout_run

    process = make_process([{"id": "a", "type": "function", "function": function}],
                           entity_type=order_type)
    for n in range(entities):
        entity_create(entity_type=order_type, reference=f"Q-{n}",
                      data={"customer": {"name": "Ada"}, "total": 1})
    batch = batch_create(entity_type=order_type, process=process, priority="low")
    broker.purge_queue()  # the fan-out task's own doorbell (normal queue)
    batch_fanout_run(batch.pk)
    return process, batch


@pytest.mark.django_db(transaction=True)
def test_a_batch_chunks_doorbells_go_on_the_batchs_queue(broker, order_type, make_process):
    """The set-based chunk rings on its runs' priority (both stores' start_chunk)."""
    _, batch = _low_batch_fanned_out(broker, order_type, make_process, 3)
    # one chunk doorbell for the 3 steps, on the low queue
    assert _queued(broker, "low") == 1 and broker.queue_size() == 1
    assert sorted(_taken(broker)) == sorted(
        StepRun.objects.filter(run__batch=batch).values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_low_chunk_gives_its_worker_back_when_it_next_asks_and_a_high_doorbell_waits(
        broker, order_type, make_process, settings):
    """A chunk doorbell's task asks the broker between its steps, every
    ENTITYFLOW_PRIORITY_CHECK_MS (engine.chunks): asked (0: before each step), it stops
    after the step it ran and rings for the rest on its own queue. Before its second
    step it asks whatever the interval (that step's claim takes the rest together)."""
    from automation import tasks

    process, batch = _low_batch_fanned_out(broker, order_type, make_process, 4)
    steps = _taken(broker)  # the chunk's one doorbell, taken by "a worker"
    assert len(steps) == 4
    high, _ = run_start(process=make_process(TWO_STEPS, slug="urgent"),
                        trigger={"type": "manual"}, priority="high")
    assert _queued(broker, "high") == 1

    settings.ENTITYFLOW_PRIORITY_CHECK_MS = 0
    tasks.steps_execute(steps, "low")
    done = StepRun.objects.filter(pk__in=steps, status="completed")
    assert list(done.values_list("pk", flat=True)) == steps[:1]
    assert _queued(broker, "low") == 1 and _queued(broker, "high") == 1

    settings.ENTITYFLOW_PRIORITY_CHECK_MS = 60_000
    tasks.steps_execute(steps[1:], "low")
    assert list(done.values_list("pk", flat=True)) == steps[:2]
    assert _queued(broker, "high") == 1


RANG = []


@function("test.rings-high-second")
def rings_high_second(ctx):
    """Rings a high doorbell (for no step: the claim finds none) on its second call."""
    RANG.append(ctx.run_id)
    if len(RANG) == 2:
        assert doorbell.ring(10**9, priority="high")
    return {}


@pytest.mark.django_db(transaction=True)
def test_a_low_chunk_not_yet_due_to_ask_runs_on_although_a_high_doorbell_waits(
        broker, order_type, make_process, settings):
    """After its second step a chunk asks only every ENTITYFLOW_PRIORITY_CHECK_MS: a high
    doorbell rung during its second step is not seen within the interval."""
    from automation import tasks

    RANG.clear()
    _, batch = _low_batch_fanned_out(broker, order_type, make_process, 4,
                                     function="test.rings-high-second")
    steps = _taken(broker)
    settings.ENTITYFLOW_PRIORITY_CHECK_MS = 60_000
    tasks.steps_execute(steps, "low")
    assert StepRun.objects.filter(pk__in=steps, status="completed").count() == 4
    assert len(RANG) == 4 and _queued(broker, "high") == 1  # still waiting


def _dequeue_one(broker) -> tuple:
    """One doorbell taken as a worker's pusher takes it: (its ack id, its task)."""
    [(ack_id, payload)] = broker.dequeue()
    return ack_id, SignedPackage.loads(payload)


def _begins(broker, ack_id, task: dict) -> None:
    """The worker begins a task as django-q2's worker does: the pusher's fields added,
    `pre_execute` sent just before the function is called."""
    from django_q.signals import pre_execute

    pre_execute.send(sender="django_q", func=task["func"], task={**task, "ack_id": ack_id})


@pytest.mark.django_db(transaction=True)
def test_a_low_chunk_yields_to_a_high_doorbell_taken_ahead_and_not_begun(
        broker, order_type, make_process, settings):
    """A worker's pusher takes doorbells ahead into its cluster's local queue (django-q2's
    `queue_limit`): here the low chunk's, then a high run's. The broker's queues are then
    empty, yet the chunk, asking between its steps, stops after its first step: the
    dequeue left a marker for the high doorbell taken and not begun (store.queues).
    Once the high task begins (django-q2's `pre_execute`) the marker is gone and the rest
    of the chunk runs on."""
    from automation import tasks

    _low_batch_fanned_out(broker, order_type, make_process, 4)
    chunk_ack, chunk = _dequeue_one(broker)
    steps = doorbell.steps_rung(chunk)
    assert len(steps) == 4
    high, _ = run_start(process=make_process(TWO_STEPS, slug="urgent"),
                        trigger={"type": "manual"}, priority="high")
    high_ack, high_task = _dequeue_one(broker)
    assert doorbell.steps_rung(high_task) == [StepRun.objects.get(run=high).pk]
    assert broker.queue_size() == 0  # nothing of it left in the broker's queues
    assert doorbell.higher_waiting("low") and doorbell.higher_waiting("normal")

    settings.ENTITYFLOW_PRIORITY_CHECK_MS = 0
    tasks.steps_execute(steps, "low")
    done = StepRun.objects.filter(pk__in=steps, status="completed")
    assert list(done.values_list("pk", flat=True)) == steps[:1]
    if chunk_ack is not None:  # the ORM broker's row, taken off once its task is done
        broker.acknowledge(chunk_ack)
    assert _queued(broker, "low") == 1  # the rest, rung again on its own queue

    _begins(broker, high_ack, high_task)
    assert not doorbell.higher_waiting("low") and not doorbell.higher_waiting("normal")
    rest_ack, rest = _dequeue_one(broker)
    assert doorbell.steps_rung(rest) == steps[1:]
    tasks.steps_execute(steps[1:], "low")
    assert done.count() == 4
    broker.acknowledge(high_ack)


@pytest.mark.django_db(transaction=True)
def test_a_normal_doorbell_taken_holds_back_low_chunks_only_and_a_lost_one_expires(broker):
    """A normal doorbell taken after a low one is marked for the low chunks (not for
    normal ones: the same priority is not higher). A marker whose task never begins (its
    worker killed) counts for nothing once its expiry has passed. A doorbell taken when
    nothing of lower priority was handed out before it is not marked at all (no marker to
    write, nor to remove when it begins)."""
    doorbell.ring(1, priority="low")
    doorbell.ring(2)
    doorbell.ring(3, priority="high")
    ack_id, task = _dequeue_one(broker)
    assert doorbell.steps_rung(task) == [3] and not isinstance(ack_id, str)
    assert not doorbell.higher_waiting("normal")  # taken, not marked
    ack_id, task = _dequeue_one(broker)
    assert doorbell.steps_rung(task) == [2] and not isinstance(ack_id, str)
    ack_id, task = _dequeue_one(broker)
    assert doorbell.steps_rung(task) == [1]
    doorbell.ring(4)
    ack_id, task = _dequeue_one(broker)  # normal, after a low one: marked
    assert doorbell.steps_rung(task) == [4] and isinstance(ack_id, str)
    assert doorbell.higher_waiting("low") and not doorbell.higher_waiting("normal")
    _expire_markers(broker)  # as time would: the worker that took it was killed
    assert not doorbell.higher_waiting("low")


def _expire_markers(broker) -> None:
    past = timezone.now() - timedelta(seconds=1)
    if isinstance(broker, PriorityRedis):
        for key in broker.taken_keys():
            for member in broker.connection.zrange(key, 0, -1):
                broker.connection.zadd(key, {member: past.timestamp()})
        return
    from django_q.models import OrmQ

    OrmQ.objects.using(broker.get_connection().db).filter(
        key__in=broker.taken_keys()).update(lock=past)
