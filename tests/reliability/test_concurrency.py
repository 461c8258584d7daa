"""Races decided by the database: two writers of one entity, two dispatchers of one event,
two deliveries of one step, two branches arriving at one join, retried API calls and
webhook deliveries arriving at the same moment. Every racer runs in its own thread with
its own database connection; on PostgreSQL these are real row-lock races, on SQLite the
IMMEDIATE transactions serialize them (both lanes run this module).

The API has no entity update (entities are read-only there), so the two
writers race through entities.services, which every writer of entities uses."""

import threading

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from automation.engine.executor import execute_step
from automation.models import ApiProcess, InboundDelivery, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.exceptions import StaleEntityError
from entities.models import Entity, EntityEvent
from entities.outbox import entity_snapshot, event_dispatch, events_sweep
from entities.services import entity_create, entity_transition, entity_update
from tests.reliability import worker_functions
from tests.reliability.support import at_once, flow_type, on_status

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 8


@pytest.fixture(autouse=True)
def _clear_calls():
    worker_functions.CALLS.clear()
    worker_functions.MEETING.clear()
    yield


def fresh(entity: Entity) -> Entity:
    return Entity.objects.select_related("entity_type").get(pk=entity.pk)


def test_two_updates_of_one_entity_at_once_one_wins_the_other_is_a_409():
    entity_type = flow_type()
    for n in range(ROUNDS):
        entity = entity_create(entity_type=entity_type, reference=f"U-{n}", data={"n": 0})
        first, second = fresh(entity), fresh(entity)  # both writers read version 1
        results = at_once(lambda a=first: entity_update(entity=a, data={"by": "first"}),
                          lambda b=second: entity_update(entity=b, data={"by": "second"}))
        outcomes = sorted(kind for kind, _ in results)
        assert outcomes == ["error", "ok"], results
        loser = next(value for kind, value in results if kind == "error")
        assert isinstance(loser, StaleEntityError) and loser.http_status == 409
        assert "changed by someone else" in loser.message
        winner = next(value for kind, value in results if kind == "ok")
        stored = fresh(entity)
        assert stored.version == 2 and stored.data == winner.data
        events = EntityEvent.objects.filter(entity=entity).order_by("id")
        assert [e.type for e in events] == ["entity.created", "entity.updated"]
        assert events[1].snapshot["data"] == winner.data  # no event for the loser


def test_two_transitions_of_one_entity_at_once_start_one_run():
    entity_type = flow_type()
    on_status("on-received", entity_type, "received")
    for n in range(ROUNDS):
        entity = entity_create(entity_type=entity_type, reference=f"T-{n}")
        first, second = fresh(entity), fresh(entity)
        results = at_once(lambda a=first: entity_transition(entity=a, to_status="received"),
                          lambda b=second: entity_transition(entity=b, to_status="received"))
        assert sorted(kind for kind, _ in results) == ["error", "ok"], results
        assert isinstance(next(v for k, v in results if k == "error"), StaleEntityError)
        assert EntityEvent.objects.filter(entity=entity, type="entity.status_changed").count() == 1
        assert Run.objects.filter(entity=entity).count() == 1
    assert not EntityEvent.objects.filter(dispatched_at__isnull=True).exists()


def undispatched_event(entity: Entity) -> EntityEvent:
    """What a crash between commit and dispatch leaves behind."""
    return EntityEvent.objects.create(
        type=EntityEvent.Type.STATUS_CHANGED, entity=entity, entity_type_key=entity.entity_type.key,
        from_status="new", to_status="received", entered_statuses=["received"],
        changed_fields=["status"], snapshot=entity_snapshot(entity), source="entity",
        occurred_at=timezone.now())


def test_one_event_dispatched_by_two_sweepers_at_once_starts_one_run():
    entity_type = flow_type()
    on_status("on-received", entity_type, "received")
    for n in range(ROUNDS):
        entity = entity_create(entity_type=entity_type, reference=f"E-{n}")
        event = undispatched_event(entity)
        results = at_once(lambda pk=event.pk: event_dispatch(pk),
                          lambda pk=event.pk: event_dispatch(pk))
        assert sorted(value for _, value in results) == [False, True], results
        assert Run.objects.filter(event=event).count() == 1
        assert Run.objects.get(event=event).status == Run.Status.COMPLETED


def test_three_whole_sweeps_at_once_dispatch_each_event_once():
    entity_type = flow_type()
    on_status("on-received", entity_type, "received")
    events = [undispatched_event(entity_create(entity_type=entity_type, reference=f"S-{n}"))
              for n in range(20)]
    results = at_once(*[lambda: events_sweep(older_than_seconds=0)] * 3)
    assert all(kind == "ok" for kind, _ in results), results
    assert sum(value for _, value in results) == len(events)
    for event in events:
        assert Run.objects.filter(event=event).count() == 1
    assert not EntityEvent.objects.filter(dispatched_at__isnull=True).exists()


def test_a_step_delivered_twice_at_once_runs_once(queued):
    process = process_save(slug="slow-count", name="Slow count", definition={"steps": [
        {"id": "only", "type": "function", "function": "reliability.count",
         "config": {"params": {"seconds": 0.05}}}]})
    runs = [run_start(process=process, trigger={"type": "manual"})[0] for _ in range(ROUNDS)]
    for run in runs:
        step = StepRun.objects.get(run=run)
        at_once(lambda step=step: execute_step(step.pk), lambda step=step: execute_step(step.pk))
    calls = [(run_id, step) for run_id, step, _ in worker_functions.CALLS]
    assert sorted(calls) == sorted((str(run.pk), "only") for run in runs)
    assert Run.objects.filter(pk__in=[r.pk for r in runs], status=Run.Status.COMPLETED).count() \
        == ROUNDS
    assert set(StepRun.objects.values_list("attempt", flat=True)) == {1}


def test_two_branches_finishing_at_once_release_their_join_once(queued):
    meet = {"type": "function", "function": "reliability.meet"}
    process = process_save(slug="fan", name="Fan", definition={"steps": [
        {"id": "a", "type": "function", "function": "reliability.count", "next": ["b", "c"]},
        {"id": "b", **meet, "next": "d"}, {"id": "c", **meet, "next": "d"},
        {"id": "d", "type": "function", "function": "reliability.count"}]})
    for _ in range(ROUNDS):
        run, _ = run_start(process=process, trigger={"type": "manual"})
        worker_functions.MEETING[str(run.pk)] = threading.Barrier(2)
        execute_step(StepRun.objects.get(run=run, step_id="a").pk)
        b, c = (StepRun.objects.get(run=run, step_id=s).pk for s in "bc")
        results = at_once(lambda b=b: execute_step(b), lambda c=c: execute_step(c))
        assert all(kind == "ok" for kind, _ in results), results
        joins = StepRun.objects.filter(run=run, step_id="d")
        assert joins.count() == 1 and joins[0].status == StepRun.Status.PENDING
        assert queued.count(joins[0].pk) == 1  # released (and rung) exactly once
        execute_step(joins[0].pk)
        run.refresh_from_db()
        assert run.status == Run.Status.COMPLETED, run.error
        assert set(StepRun.objects.get(run=run, step_id="d").input) == {"b", "c"}
    steps = [step for _, step, _ in worker_functions.CALLS]
    assert steps.count("d") == ROUNDS and steps.count("b") == ROUNDS


def test_one_idempotency_key_sent_by_four_callers_at_once_starts_one_run(tokens):
    process_save(slug="charge", name="Charge", definition={"steps": [
        {"id": "only", "type": "function", "function": "reliability.count"}]})

    def call():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
        return client.post("/api/workflow-definitions/charge/trigger", {"input": {"n": 1}},
                           format="json", headers={"Idempotency-Key": "order-42-charge"})

    results = at_once(call, call, call, call)
    assert all(kind == "ok" for kind, _ in results), results
    assert [r.status_code for _, r in results] == [202] * 4
    assert len({r.json()["executionId"] for _, r in results}) == 1
    assert Run.objects.filter(process__slug="charge").count() == 1
    assert len(worker_functions.CALLS) == 1


def test_one_webhook_delivery_arriving_four_times_at_once_starts_one_run():
    token = "tok_reliability_0123456789"
    process_save(slug="shop-hook", name="Shop hook", definition={
        "steps": [{"id": "only", "type": "function", "function": "reliability.count"}],
        "triggers": [{"type": "webhook", "config": {"path": "/shop/orders", "token": token}}]})

    def deliver():
        return Client().post(f"/hooks/shop/orders?token={token}", {"order": 7},
                             content_type="application/json",
                             headers={"X-Entityflow-Delivery": "dlv-7"})

    results = at_once(deliver, deliver, deliver, deliver)
    assert all(kind == "ok" for kind, _ in results), results
    codes = sorted(r.status_code for _, r in results)
    assert codes == [200, 200, 200, 202], [r.content for _, r in results]
    assert len({r.json()["executionId"] for _, r in results}) == 1
    assert Run.objects.filter(process__slug="shop-hook").count() == 1
    assert InboundDelivery.objects.count() == 1
    assert ApiProcess.objects.get(slug="shop-hook").runs.count() == 1
