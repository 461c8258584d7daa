"""Entity events start processes: exactly once per qualifying event."""

import pytest
from django.db import transaction

from automation.models import ProcessTrigger, Run
from automation.services.processes import process_save, process_set_enabled
from entities.services import entity_create, entity_update

pytestmark = pytest.mark.django_db(transaction=True)

VALID = {"customer": {"name": "Ada", "email": "ada@example.com"}, "total": 120}
NO_EMAIL = {"customer": {"name": "Bob"}, "total": 50}


def on_status(order_type, status, condition=None, slug=None):
    trigger = {"type": "status", "config": {"entityType": "order", "status": status}}
    if condition:
        trigger["condition"] = condition
    return process_save(slug=slug or f"on-{status}", name=f"On {status}", entity_type=order_type,
                        definition={"steps": [{"id": "a", "type": "function", "function": "test.record"}],
                                    "triggers": [trigger]})


def test_order_reaching_received_starts_its_process_once(order_type):
    process = on_status(order_type, "received")
    order = entity_create(entity_type=order_type, reference="T-1", data=NO_EMAIL)
    assert order.status == "received"
    runs = Run.objects.filter(process=process, entity=order)
    assert runs.count() == 1 and runs.get().status == "completed"
    entity_update(entity=order, data={**NO_EMAIL, "total": 60})  # saved again, same status
    assert runs.count() == 1


def test_passing_through_a_status_in_one_save_counts_as_entering_it(order_type):
    received, approved = on_status(order_type, "received"), on_status(order_type, "approved")
    order = entity_create(entity_type=order_type, reference="T-2", data=VALID)
    assert order.status == "approved"
    assert Run.objects.filter(process=received).count() == 1
    assert Run.objects.filter(process=approved).count() == 1


def test_re_entering_the_status_starts_again(order_type):
    approved = on_status(order_type, "approved")
    order = entity_create(entity_type=order_type, reference="T-3", data=VALID)
    entity_update(entity=order, data=NO_EMAIL)  # falls back to suspended
    assert order.status == "suspended"
    entity_update(entity=order, data=VALID)  # back to approved
    assert order.status == "approved"
    assert Run.objects.filter(process=approved, entity=order).count() == 2


def test_rolled_back_save_starts_nothing(order_type):
    process = on_status(order_type, "received")
    with pytest.raises(RuntimeError), transaction.atomic():
        entity_create(entity_type=order_type, reference="T-4", data=NO_EMAIL)
        raise RuntimeError("the request failed after the save")
    assert not Run.objects.filter(process=process).exists()


def test_trigger_condition_false_records_only_a_counter(order_type):
    process = on_status(order_type, "received", condition="event.entity.data.total > 100")
    entity_create(entity_type=order_type, reference="T-5", data=NO_EMAIL)  # total 50
    assert not Run.objects.filter(process=process).exists()
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1
    entity_create(entity_type=order_type, reference="T-6", data={**NO_EMAIL, "total": 500})
    assert Run.objects.filter(process=process).count() == 1


def test_disabled_process_is_not_started(order_type):
    process = on_status(order_type, "received")
    process_set_enabled(process=process, enabled=False)
    entity_create(entity_type=order_type, reference="T-7", data=NO_EMAIL)
    assert not Run.objects.exists()


def test_redelivered_event_starts_nothing_new(order_type):
    from entities.models import EntityEvent
    from entities.outbox import event_dispatch

    process = on_status(order_type, "received")
    order = entity_create(entity_type=order_type, reference="T-8", data=NO_EMAIL)
    event = EntityEvent.objects.get(entity=order)
    EntityEvent.objects.filter(pk=event.pk).update(dispatched_at=None)  # as if the claim was lost
    assert event_dispatch(event.pk) is True
    assert Run.objects.filter(process=process).count() == 1


def test_event_trigger_matches_published_events_with_condition():
    from entities.outbox import event_publish

    process = process_save(slug="purchase", name="Purchase", definition={
        "steps": [{"id": "a", "type": "function", "function": "test.record"}],
        "triggers": [{"type": "event", "config": {"eventType": "purchase.created"},
                      "condition": "event.data.total > 0"}]})
    event_publish(type="purchase.created", data={"total": 0})
    event_publish(type="other.thing", data={"total": 5})
    assert not Run.objects.exists()
    event = event_publish(type="purchase.created", data={"total": 5})
    run = Run.objects.get(process=process)
    assert run.event_id == event.pk and run.input == {"total": 5}


def test_event_trigger_scoped_to_an_entity_type_matches_only_that_type(order_type):
    from entities.models import EntityType

    other = EntityType.objects.create(key="invoice", name="Invoice", schema={})
    steps = [{"id": "a", "type": "function", "function": "test.record"}]
    scoped = process_save(slug="order-updates", name="Order updates", definition={
        "steps": steps, "triggers": [{"type": "event", "config": {
            "eventType": "entity.updated", "entityType": "order"}}]})
    elsewhere = process_save(slug="invoice-updates", name="Invoice updates", definition={
        "steps": steps, "triggers": [{"type": "event", "config": {
            "eventType": "entity.updated", "entityType": other.key}}]})
    unscoped = process_save(slug="any-updates", name="Any updates", definition={
        "steps": steps, "triggers": [{"type": "event", "config": {"eventType": "entity.updated"}}]})
    order = entity_create(entity_type=order_type, reference="T-9", data=NO_EMAIL)
    entity_update(entity=order, data={**NO_EMAIL, "total": 70})
    assert Run.objects.filter(process=scoped).count() == 1
    assert Run.objects.filter(process=unscoped).count() == 1
    assert not Run.objects.filter(process=elsewhere).exists()


def _purchase_process(slug: str, condition: str):
    return process_save(slug=slug, name=slug, definition={
        "steps": [{"id": "a", "type": "function", "function": "test.record"}],
        "triggers": [{"type": "event", "config": {"eventType": "purchase.created"},
                      "condition": condition}]})


def test_a_condition_keyed_on_a_text_is_a_candidate_only_for_events_with_that_text():
    """docs/user-guide/triggers.md#many-processes: the index rules out the triggers whose
    first comparison cannot hold, so only the others are evaluated and recorded."""
    from entities.outbox import event_publish

    acme = _purchase_process("acme", 'event.data.tenant == "acme" && event.data.total > 10')
    other = _purchase_process("other", "event.data.tenant == 'other'")
    either = _purchase_process("either", 'event.data.tenant == "acme" || event.data.total > 10')
    small = event_publish(type="purchase.created", data={"tenant": "acme", "total": 5})
    # acme: evaluated, false, recorded; other: ruled out by the index, not recorded;
    # either has `||`, so it is not keyed: evaluated, and it holds (acme's tenant)
    small.refresh_from_db()
    assert [skip["process"] for skip in small.skipped] == ["acme"]
    assert Run.objects.filter(process=either).count() == 1  # acme's tenant: `||` holds
    assert ProcessTrigger.objects.get(process=other).skipped_count == 0
    assert ProcessTrigger.objects.get(process=acme).skipped_count == 1
    event_publish(type="purchase.created", data={"tenant": "acme", "total": 50})
    assert Run.objects.filter(process=acme).count() == 1
    assert ProcessTrigger.objects.get(process=other).skipped_count == 0
    # no text to look up (not a text, or no tenant at all): every keyed condition is
    # evaluated and recorded, with its error when it cannot be, as without the index
    for data, why in (({"tenant": 7, "total": 50}, "is false"),
                      ({"total": 50}, "could not be evaluated")):
        event = event_publish(type="purchase.created", data=data)
        event.refresh_from_db()
        reasons = {skip["process"]: skip["reason"] for skip in event.skipped}
        assert why in reasons["other"], reasons
    assert not Run.objects.filter(process=other).exists()
    event_publish(type="purchase.created", data={"tenant": "other"})
    assert Run.objects.filter(process=other).count() == 1


@pytest.mark.parametrize(("condition", "key"), [
    ('entity.data.region == "eu"', (("entity", "data", "region"), "eu")),
    ("  event.data.a.b == 'x' && size(event.data.items) > 0",
     (("event", "data", "a", "b"), "x")),
    ('input.kind == "" && input.n > 1', (("input", "kind"), "")),
    ('entity.data.region == "eu" || entity.data.n > 1', None),  # `||` could hold without it
    ('entity.data.region == "eu" && entity.data.n > 1 ? true : false', None),
    ('entity.data.n > 1 && entity.data.region == "eu"', None),  # not the first comparison
    ('!(entity.data.region == "eu")', None),
    ('entity.data.region == "eu" + "x"', None),
    ('entity.data.region === "eu"', None),
    ('entity.data.n == 1', None),  # only texts are keyed
    ('steps.a.output == "x"', None),
    ("", None),
])
def test_which_conditions_the_index_keys(condition, key):
    from automation.triggers.events import condition_key

    assert condition_key(condition) == key
