import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from entities import outbox
from entities.models import Entity, EntityEvent
from entities.services import entity_update
from tests.factories import make_order

pytestmark = pytest.mark.django_db


def sweep(*args: str) -> str:
    out = StringIO()
    call_command("dispatch_events", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_committed_save_is_dispatched_once_after_commit(order_type, dispatched_events):
    with transaction.atomic():
        order = make_order()
        assert dispatched_events == []  # nothing leaves before the commit

    [event] = dispatched_events
    assert (event.type, event.entity_id) == ("entity.created", order.pk)
    assert EntityEvent.objects.get(pk=event.pk).dispatched_at is not None


@pytest.mark.django_db(transaction=True)
def test_rolled_back_save_leaves_no_event_and_dispatches_nothing(order_type, dispatched_events):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_order(reference="ORD-GONE")
        raise RuntimeError("the caller failed after saving")

    assert not Entity.objects.filter(reference="ORD-GONE").exists()
    assert EntityEvent.objects.count() == 0
    assert dispatched_events == []


@pytest.mark.django_db(transaction=True)
def test_one_event_per_save_each_dispatched(order_type, dispatched_events):
    order = make_order()
    entity_update(entity=order, data={**order.data, "items": 7})

    assert [e.type for e in dispatched_events] == ["entity.created", "entity.updated"]
    assert dispatched_events[1].changed_fields == ["items"]
    assert not EntityEvent.objects.filter(dispatched_at__isnull=True).exists()


def test_event_nobody_listens_to_is_written_already_dispatched(order_type):
    outbox.subscribe("tests.deaf", lambda event: None, interested=lambda event: False)
    try:
        order = make_order()
    finally:
        outbox.unsubscribe("tests.deaf")

    event = EntityEvent.objects.get(entity=order)
    assert event.dispatched_at is not None
    assert sweep("--older-than", "0") == "Dispatched 0 event(s).\n"


def test_dispatch_events_sweeps_a_left_over_event_exactly_once(order_type, dispatched_events):
    # Inside the test transaction nothing commits, so the event is left as after a crash.
    order = make_order()
    assert EntityEvent.objects.get(entity=order).dispatched_at is None

    assert sweep("--older-than", "0") == "Dispatched 1 event(s).\n"
    assert sweep("--older-than", "0") == "Dispatched 0 event(s).\n"

    assert [e.entity_id for e in dispatched_events] == [order.pk]
    assert EntityEvent.objects.get(entity=order).dispatched_at is not None


def test_dispatch_events_leaves_fresh_events_to_the_after_commit_dispatch(
    order_type, dispatched_events
):
    make_order()

    assert sweep() == "Dispatched 0 event(s).\n"  # default: only events older than 5 s
    assert dispatched_events == []


def test_failing_subscriber_leaves_the_event_for_the_next_sweep(order_type):
    attempts = []

    def down_once(event):
        attempts.append(event.pk)
        if len(attempts) == 1:
            raise ConnectionError("subscriber down")

    outbox.subscribe("tests.down-once", down_once)
    try:
        order = make_order()
        event = EntityEvent.objects.get(entity=order)

        assert sweep("--older-than", "0") == "Dispatched 0 event(s).\n"
        assert EntityEvent.objects.get(pk=event.pk).dispatched_at is None

        assert sweep("--older-than", "0") == "Dispatched 1 event(s).\n"
        assert sweep("--older-than", "0") == "Dispatched 0 event(s).\n"
    finally:
        outbox.unsubscribe("tests.down-once")
    assert attempts == [event.pk, event.pk]


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatch_hands_an_event_to_subscribers_once(order_type):
    calls = []
    barrier = threading.Barrier(2)

    def slow(event):
        calls.append(event.pk)
        threading.Event().wait(0.3)  # hold the claim while the other dispatcher tries

    order = make_order()
    event = EntityEvent.objects.get(entity=order)
    EntityEvent.objects.filter(pk=event.pk).update(dispatched_at=None)  # as after a crash
    outbox.subscribe("tests.slow", slow)
    try:
        results = []

        def dispatch():
            try:
                barrier.wait()
                results.append(outbox.event_dispatch(event.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=dispatch) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        outbox.unsubscribe("tests.slow")

    assert sorted(results) == [False, True]
    assert calls == [event.pk]
    assert EntityEvent.objects.get(pk=event.pk).dispatched_at is not None
