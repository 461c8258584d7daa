import pytest
from django.core.exceptions import ValidationError

from entities.models import Entity, EntityType, Requirement
from tests.factories import make_entity_type, make_order

pytestmark = pytest.mark.django_db


def test_status_cannot_be_assigned_directly(order_type):
    order = make_order()

    with pytest.raises(AttributeError, match="Direct status modification is not allowed"):
        order.status = "shipped"

    loaded = Entity.objects.get(pk=order.pk)
    with pytest.raises(AttributeError):
        loaded.status = "shipped"
    assert Entity.objects.get(pk=order.pk).status == "approved"


def test_refresh_from_db_picks_up_the_new_status_and_keeps_it_protected(order_type):
    order = make_order()
    Entity.objects.filter(pk=order.pk).update(status="shipped")

    order.refresh_from_db()

    assert order.status == "shipped"
    assert order.saved_state["status"] == "shipped"
    with pytest.raises(AttributeError):
        order.status = "received"


def test_requirement_with_a_bad_expression_is_refused(order_type):
    approved = order_type.statuses.get(key="approved")
    requirement = Requirement(
        entity_type=order_type, status=approved, name="Broken",
        expression="entity.data.total >", message="Broken",
    )

    with pytest.raises(ValidationError) as excinfo:
        requirement.full_clean()

    assert "expression" in excinfo.value.message_dict
    assert excinfo.value.message_dict["expression"][0]


def test_requirement_for_a_status_of_another_type_is_refused(order_type):
    other = make_entity_type()
    requirement = Requirement(
        entity_type=other, status=order_type.statuses.get(key="approved"),
        name="Mixed up", expression="entity.data.total > 0", message="Mixed up",
    )

    with pytest.raises(ValidationError) as excinfo:
        requirement.full_clean()

    assert excinfo.value.message_dict["status"] == ["The status belongs to another entity type."]


def test_entity_type_with_an_invalid_json_schema_is_refused():
    entity_type = EntityType(key="broken", name="Broken", schema={"type": "no-such-type"})

    with pytest.raises(ValidationError) as excinfo:
        entity_type.full_clean()

    assert excinfo.value.message_dict["schema"][0].startswith("Not a valid JSON Schema")
