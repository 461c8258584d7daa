import pytest

from entities.exceptions import (
    EntityDataInvalidError,
    StaleEntityError,
    TransitionNotAllowedError,
)
from entities.models import Entity, EntityEvent
from entities.services import (
    entity_create,
    entity_transition,
    entity_update,
    external_link_upsert,
)
from tests.factories import make_entity_type, make_order, order_data

pytestmark = pytest.mark.django_db

EMAIL_MISSING = "The customer's email address is missing."


def events_of(entity) -> list[EntityEvent]:
    return list(EntityEvent.objects.filter(entity=entity).order_by("id"))


def without_email(data: dict) -> dict:
    customer = {k: v for k, v in data["customer"].items() if k != "email"}
    return {**data, "customer": customer}


# --- Creating ---------------------------------------------------------------------------


def test_complete_order_is_approved_on_creation(order_type):
    order = make_order(reference="ORD-1")

    assert order.status == "approved"
    assert order.unmet_requirements == []
    [event] = events_of(order)
    assert event.type == "entity.created"
    assert (event.from_status, event.to_status) == ("", "approved")
    assert event.entered_statuses == ["received", "approved"]
    assert event.changed_fields == ["currency", "customer", "items", "total"]
    assert event.snapshot["reference"] == "ORD-1"
    assert Entity.objects.get(pk=order.pk).status == "approved"


def test_order_without_email_stays_received_with_the_unmet_message(order_type):
    order = make_order(data=without_email(order_data()))

    stored = Entity.objects.get(pk=order.pk)
    assert stored.status == "received"
    assert [u["message"] for u in stored.unmet_requirements] == [EMAIL_MISSING]
    assert stored.unmet_requirements[0]["requirement"] == "Customer email present"
    assert stored.unmet_requirements[0]["status"] == "approved"
    assert events_of(order)[0].entered_statuses == ["received"]


def test_order_with_empty_email_and_zero_total_lists_both_messages(order_type):
    order = make_order(customer={"name": "Ada", "email": ""}, total=0)

    assert order.status == "received"
    assert [u["message"] for u in order.unmet_requirements] == [
        EMAIL_MISSING, "The order total must be above zero.",
    ]


def test_missing_field_is_stored_as_unmet_with_a_reason_not_raised():
    scored = make_entity_type(
        statuses=("new", "qualified"), transitions=[("new", "qualified")],
        requirements=[("qualified", "Score", "entity.data.score > 5", "Needs a score above 5.")],
    )

    entity = entity_create(entity_type=scored, reference="S-1", data={"name": "no score"})

    assert entity.status == "new"
    [unmet] = Entity.objects.get(pk=entity.pk).unmet_requirements
    assert unmet["message"] == "Needs a score above 5."
    assert unmet["reason"]  # why the expression could not be evaluated
    entity_update(entity=entity, data={"score": 9})
    assert entity.status == "qualified"


def test_data_violating_the_schema_is_refused_with_the_field_named(order_type):
    with pytest.raises(EntityDataInvalidError) as excinfo:
        make_order(reference="ORD-BAD", total=-5)

    assert "data.total" in excinfo.value.fields
    assert "data.total" in excinfo.value.message
    assert not Entity.objects.filter(reference="ORD-BAD").exists()
    assert EntityEvent.objects.count() == 0


def test_missing_required_field_is_named(order_type):
    data = {"total": 10}

    with pytest.raises(EntityDataInvalidError) as excinfo:
        make_order(data=data)

    assert "data.customer" in excinfo.value.fields


def test_duplicate_reference_is_refused(order_type):
    make_order(reference="ORD-1")

    with pytest.raises(EntityDataInvalidError) as excinfo:
        make_order(reference="ORD-1")

    assert excinfo.value.message == "Order with reference 'ORD-1' already exists."
    assert excinfo.value.fields == {"reference": [excinfo.value.message]}

    assert Entity.objects.filter(reference="ORD-1").count() == 1


# --- Updating ---------------------------------------------------------------------------


def test_update_without_status_change_writes_one_updated_event(order_type):
    order = make_order()

    entity_update(entity=order, data={**order.data, "items": 99})

    assert order.version == 2
    created, updated = events_of(order)
    assert updated.type == "entity.updated"
    assert (updated.from_status, updated.to_status) == ("approved", "approved")
    assert updated.changed_fields == ["items"]
    assert updated.entered_statuses == []
    assert Entity.objects.get(pk=order.pk).data["items"] == 99


def test_in_place_edit_of_data_is_seen_as_a_change(order_type):
    order = make_order()

    order.data["items"] = 42
    entity_update(entity=order, data=order.data)

    assert events_of(order)[-1].changed_fields == ["items"]


def test_approved_order_losing_its_email_falls_back_to_suspended_and_returns(order_type):
    order = make_order()

    entity_update(entity=order, data=without_email(order.data))

    assert Entity.objects.get(pk=order.pk).status == "suspended"
    fell_back = events_of(order)[-1]
    assert fell_back.type == "entity.status_changed"
    assert (fell_back.from_status, fell_back.to_status) == ("approved", "suspended")
    assert fell_back.changed_fields == ["customer", "status"]
    assert [u["message"] for u in order.unmet_requirements] == [EMAIL_MISSING]

    entity_update(entity=order, data={**order.data, "customer": {"name": "A", "email": "a@x.io"}})

    assert Entity.objects.get(pk=order.pk).status == "approved"
    assert order.unmet_requirements == []
    returned = events_of(order)[-1]
    assert (returned.from_status, returned.to_status) == ("suspended", "approved")
    assert len(events_of(order)) == 3


def test_merge_update_keeps_the_other_fields(order_type):
    order = make_order()

    entity_update(entity=order, data={"items": 3}, merge=True)

    assert Entity.objects.get(pk=order.pk).data == {**order_data(), "items": 3}


def test_update_violating_the_schema_changes_nothing(order_type):
    order = make_order()

    with pytest.raises(EntityDataInvalidError) as excinfo:
        entity_update(entity=order, data={**order.data, "total": "a lot"})

    assert "data.total" in excinfo.value.fields
    stored = Entity.objects.get(pk=order.pk)
    assert stored.data == order_data() and stored.version == 1
    assert len(events_of(order)) == 1


def test_stale_concurrent_update_is_refused(order_type):
    order = make_order()
    first = Entity.objects.get(pk=order.pk)
    second = Entity.objects.get(pk=order.pk)

    entity_update(entity=first, data={**first.data, "items": 1})
    with pytest.raises(StaleEntityError, match="changed by someone else"):
        entity_update(entity=second, data={**second.data, "items": 2})

    stored = Entity.objects.get(pk=order.pk)
    assert stored.data["items"] == 1 and stored.version == 2
    assert len(events_of(order)) == 2


def test_update_with_an_outdated_expected_version_is_refused(order_type):
    order = make_order()
    entity_update(entity=order, data={**order.data, "items": 1})

    with pytest.raises(StaleEntityError):
        entity_update(entity=order, data={**order.data, "items": 2}, expected_version=1)


# --- Transitions ------------------------------------------------------------------------


def test_allowed_transition_moves_and_records_it(order_type):
    order = make_order()

    entity_transition(entity=order, to_status="shipped")

    assert Entity.objects.get(pk=order.pk).status == "shipped"
    event = events_of(order)[-1]
    assert event.type == "entity.status_changed"
    assert (event.from_status, event.to_status) == ("approved", "shipped")
    assert event.entered_statuses == ["shipped"]
    assert event.changed_fields == ["status"]


def test_disallowed_transition_is_refused_and_nothing_is_saved(order_type):
    order = make_order(data=without_email(order_data()))

    with pytest.raises(TransitionNotAllowedError, match="cannot move from 'received' to 'shipped'"):
        entity_transition(entity=order, to_status="shipped")

    assert order.status == "received"
    stored = Entity.objects.get(pk=order.pk)
    assert (stored.status, stored.version) == ("received", 1)
    assert EntityEvent.objects.filter(entity=order).count() == 1


def test_transition_into_a_status_with_unmet_requirements_is_refused(order_type):
    order = make_order(data=without_email(order_data()))

    with pytest.raises(TransitionNotAllowedError) as excinfo:
        entity_transition(entity=order, to_status="approved")

    assert excinfo.value.fields == {"status": [EMAIL_MISSING]}
    assert Entity.objects.get(pk=order.pk).status == "received"
    assert EntityEvent.objects.filter(entity=order).count() == 1


def test_final_status_allows_no_further_moves(order_type):
    order = make_order()
    entity_transition(entity=order, to_status="shipped")

    for target in ("received", "approved", "suspended"):
        with pytest.raises(TransitionNotAllowedError):
            entity_transition(entity=order, to_status=target)

    assert Entity.objects.get(pk=order.pk).status == "shipped"


def test_staff_can_suspend_an_approved_order(order_type):
    order = make_order()

    entity_transition(entity=order, to_status="suspended")

    assert Entity.objects.get(pk=order.pk).status == "suspended"
    assert events_of(order)[-1].entered_statuses == ["suspended"]
    entity_transition(entity=order, to_status="approved")
    assert Entity.objects.get(pk=order.pk).status == "approved"


def test_unknown_initial_status_is_refused(order_type):
    with pytest.raises(TransitionNotAllowedError, match="'lost' is not a status of Order"):
        entity_create(entity_type=order_type, reference="ORD-X", data=order_data(), status="lost")


# --- External links ---------------------------------------------------------------------


def test_external_link_upsert_updates_instead_of_duplicating(order_type):
    order = make_order()

    external_link_upsert(entity=order, provider="hubspot", object_type="deal", external_id="1")
    link = external_link_upsert(entity=order, provider="hubspot", object_type="deal",
                                external_id="2", url="https://app.hubspot.com/deal/2")

    assert list(order.external_links.values_list("external_id", "url")) == [
        ("2", "https://app.hubspot.com/deal/2")
    ]
    assert link.external_id == "2"
