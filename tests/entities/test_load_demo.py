from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from entities.models import Entity, EntityEvent, EntityType

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_hubspot_token(monkeypatch):
    """A token in the developer's environment would enable the HubSpot process."""
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)


def load_demo(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("load_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_load_demo_creates_500_orders_and_is_idempotent():
    out, err = load_demo()

    orders = Entity.objects.filter(entity_type__key="order")
    assert orders.count() == 500
    assert orders.filter(reference="ORD-00001").exists()
    assert orders.filter(reference="ORD-00500").exists()
    assert orders.filter(status="approved").count() == 450
    waiting = orders.filter(status="received")
    assert waiting.count() == 50
    assert all(
        [u["message"] for u in order.unmet_requirements]
        == ["The customer's email address is missing."]
        for order in waiting
    )
    assert "Created 500 orders" in out and "50 received, 450 approved" in out
    assert "demo / demo12345" in out
    assert "500/500" in err  # progress bar
    user = authenticate(username="demo", password="demo12345")
    assert user is not None and user.is_staff and user.is_superuser
    events = EntityEvent.objects.count()

    again, _ = load_demo()

    assert orders.count() == 500
    assert EntityEvent.objects.count() == events
    assert EntityType.objects.filter(key="order").count() == 1
    assert order_type_shape() == (4, 4, 2)
    assert "Created 0 orders (500 already there)" in again


def test_load_demo_tops_up_to_the_requested_number():
    load_demo("--orders", "20")
    out, _ = load_demo("--orders", "30")

    assert Entity.objects.filter(entity_type__key="order").count() == 30
    assert "Created 10 orders (20 already there)" in out


def order_type_shape() -> tuple[int, int, int]:
    order = EntityType.objects.get(key="order")
    return order.statuses.count(), order.transitions.count(), order.requirements.count()


def test_load_demo_sets_up_hubspot_but_stays_offline(settings):
    from automation.connections.services import connection_credentials
    from automation.demo import HUBSPOT_PLACEHOLDER
    from automation.models import ApiProcess, Connection, Run

    out, _ = load_demo("--orders", "10")

    connection = Connection.objects.get(name="hubspot")
    assert connection.provider == "hubspot" and connection.base_url == settings.HUBSPOT_BASE_URL
    assert connection_credentials(connection) == {"accessToken": HUBSPOT_PLACEHOLDER}
    assert HUBSPOT_PLACEHOLDER not in connection.credentials_encrypted
    process = ApiProcess.objects.get(slug="copy-order-to-hubspot")
    assert not process.enabled and process.entity_type.key == "order"
    assert [t["type"] for t in process.definition["triggers"]] == ["status"]
    assert [s["function"] for s in process.definition["steps"]] == [
        "hubspot.upsert_contact", "hubspot.upsert_deal", "hubspot.associate"]
    assert not Run.objects.filter(process=process).exists()
    assert "Copy order to HubSpot (disabled)" in out
    assert "set HUBSPOT_ACCESS_TOKEN" in out

    load_demo("--orders", "10")
    assert Connection.objects.filter(provider="hubspot").count() == 1
    assert ApiProcess.objects.get(slug="copy-order-to-hubspot").versions.count() == 1
