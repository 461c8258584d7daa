"""The seed scenario with the demo data: `load_demo` sets up the `hubspot` connection
and "Copy order to HubSpot" (disabled while the token is a placeholder); pointed at the
fake HubSpot on 127.0.0.1 and enabled, an order reaching `received` becomes a deal that
the order's page links to, and running again updates the same deal."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from automation.connections.services import connection_credentials
from automation.demo import COPY_TO_HUBSPOT_SLUG, HUBSPOT_PLACEHOLDER
from automation.models import ApiProcess, Connection, Run
from automation.services.runs import run_start
from entities.models import Entity

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_URL = "https://app.hubspot.com/contacts/12345678/record/0-3/{}"


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)


def load_demo(orders: int) -> str:
    out = StringIO()
    call_command("load_demo", "--orders", str(orders), stdout=out, stderr=StringIO())
    return out.getvalue()


def copy_runs() -> list[Run]:
    return list(Run.objects.filter(process__slug=COPY_TO_HUBSPOT_SLUG).order_by("created_at"))


def test_demo_order_becomes_a_deal_linked_from_the_order_page(admin_client, hubspot_fake,
                                                              settings):
    out = load_demo(5)
    process = ApiProcess.objects.get(slug=COPY_TO_HUBSPOT_SLUG)
    connection = Connection.objects.get(name="hubspot")
    assert process.name == "Copy order to HubSpot" and not process.enabled
    assert "Copy order to HubSpot (disabled)" in out and "HUBSPOT_ACCESS_TOKEN" in out
    assert connection.provider == "hubspot" and connection.base_url == settings.HUBSPOT_BASE_URL
    assert connection_credentials(connection) == {"accessToken": HUBSPOT_PLACEHOLDER}
    assert copy_runs() == [] and hubspot_fake.calls == []  # offline until enabled

    # A user points the connection at the fake HubSpot and enables the process.
    changed = admin_client.post(
        reverse("admin:automation_connection_change", args=[connection.pk]),
        {"name": "hubspot", "base_url": hubspot_fake.url, "options": "{}",
         "hubspot__accessToken": hubspot_fake.token})
    assert changed.status_code == 302
    admin_client.post(reverse("admin:automation_apiprocess_changelist"),
                      {"action": "enable_selected", "_selected_action": [process.pk]})
    process.refresh_from_db()
    assert process.enabled

    load_demo(7)  # ORD-00006 reaches `received`; ORD-00007 has no email: not copied

    [run] = copy_runs()
    assert run.status == Run.Status.COMPLETED, run.error
    order = Entity.objects.get(reference="ORD-00006")
    assert run.entity_id == order.pk
    [deal] = hubspot_fake.objects["deals"].values()
    [contact] = hubspot_fake.objects["contacts"].values()
    assert deal["properties"]["dealname"] == "Order ORD-00006"
    assert deal["properties"]["amount"] == str(order.data["total"])
    assert contact["properties"]["email"] == order.data["customer"]["email"]
    assert ("deals", deal["id"], "contacts", contact["id"]) in hubspot_fake.associations
    link = order.external_links.get(provider="hubspot", object_type="deal")
    assert link.external_id == deal["id"] and link.url == RECORD_URL.format(deal["id"])
    page = admin_client.get(reverse("admin:entities_entity_change", args=[order.pk]))
    assert f'href="{link.url}"' in page.content.decode()

    # Running again (by hand, and through load_demo) updates the same deal.
    Entity.objects.filter(pk=order.pk).update(data={**order.data, "total": 999.0})
    order.refresh_from_db()
    rerun, _ = run_start(process=process, trigger={"type": "manual"}, entity=order)
    rerun.refresh_from_db()
    assert rerun.status == Run.Status.COMPLETED, rerun.error
    assert list(hubspot_fake.objects["deals"]) == [deal["id"]]
    assert hubspot_fake.objects["deals"][deal["id"]]["properties"]["amount"] == "999.0"
    assert len(hubspot_fake.objects["contacts"]) == 1
    assert order.external_links.filter(object_type="deal").count() == 1

    load_demo(7)
    process.refresh_from_db()
    connection.refresh_from_db()
    assert process.enabled and connection.base_url == hubspot_fake.url
    assert connection_credentials(connection) == {"accessToken": hubspot_fake.token}
    assert len(copy_runs()) == 2 and len(hubspot_fake.objects["deals"]) == 1


def test_a_token_in_the_environment_enables_the_process(hubspot_fake, settings, monkeypatch):
    settings.HUBSPOT_BASE_URL = hubspot_fake.url
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot_fake.token)

    out = load_demo(3)

    process = ApiProcess.objects.get(slug=COPY_TO_HUBSPOT_SLUG)
    connection = Connection.objects.get(name="hubspot")
    assert process.enabled and "(disabled)" not in out
    assert connection.base_url == hubspot_fake.url
    assert hubspot_fake.token not in connection.credentials_encrypted
    runs = copy_runs()
    assert [r.status for r in runs] == [Run.Status.COMPLETED] * 3
    assert sorted(d["properties"]["dealname"] for d in hubspot_fake.objects["deals"].values()) \
        == ["Order ORD-00001", "Order ORD-00002", "Order ORD-00003"]


def test_a_token_set_later_replaces_the_placeholder_on_the_next_load(hubspot_fake, settings,
                                                                     monkeypatch):
    settings.HUBSPOT_BASE_URL = hubspot_fake.url
    load_demo(1)
    assert not ApiProcess.objects.get(slug=COPY_TO_HUBSPOT_SLUG).enabled

    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot_fake.token)
    load_demo(2)

    assert ApiProcess.objects.get(slug=COPY_TO_HUBSPOT_SLUG).enabled
    connection = Connection.objects.get(name="hubspot")
    assert connection_credentials(connection) == {"accessToken": hubspot_fake.token}
    [run] = copy_runs()  # ORD-00002, created after the token was configured
    assert run.status == Run.Status.COMPLETED and run.entity.reference == "ORD-00002"


def test_the_demo_approval_notice_emails_the_customer(mailoutbox):
    load_demo(2)
    order = Entity.objects.get(reference="ORD-00002")

    run, _ = run_start(process=ApiProcess.objects.get(slug="order-approved-notice"),
                       trigger={"type": "manual"}, entity=order)

    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    [message] = mailoutbox
    assert message.to == [order.data["customer"]["email"]]
    assert message.subject == "Your order ORD-00002 is approved"
    assert message.body.startswith(f"Hello {order.data['customer']['name']}, your order of ")
