"""The why-timeline of an order (entities.timeline, GET /api/entities/{id}/timeline): two
status moves, two runs (one failed, then retried by staff) and one approval, every entry
in order with its actor; the kind filter and the cursor."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from automation.models import ApiProcess, ApprovalRequest, Run
from automation.services.api_auth import api_client_create, tokens_issue
from automation.services.processes import process_save
from entities.models import Entity

pytestmark = pytest.mark.django_db(transaction=True)

NO_EMAIL = {"customer": {"name": "Ada Lovelace"}, "total": 120}


def approved_trigger():
    return [{"type": "status", "config": {"entityType": "order", "status": "approved"}}]


@pytest.fixture
def processes(order_type):
    process_save(slug="approve-order", name="Approve order", entity_type=order_type, definition={
        "steps": [{"id": "ask", "type": "human", "config": {"approvers": ["admin"]},
                   "next": "done"},
                  {"id": "done", "type": "function", "function": "noop"}],
        "triggers": approved_trigger()})
    process_save(slug="ship-order", name="Ship order", entity_type=order_type, definition={
        "steps": [{"id": "ship", "type": "function", "function": "test.flaky",
                   "config": {"params": {"failures": 1}}}],
        "triggers": approved_trigger()})


def admin_form(admin_client, order, **changes):
    page = admin_client.get(reverse("admin:entities_entity_change", args=[order.pk]))
    form = page.context["adminform"].form
    values = {"data": json.dumps(order.data), "move_to": "",
              "expected_version": form["expected_version"].value()}
    return {**values, **changes}


def the_order_story(admin_client, order_type):
    """Created and edited by staff in the admin; an API client decides the approval for
    staff; staff retry the failed run and ship the order."""
    response = admin_client.post(reverse("admin:entities_entity_add"), {
        "entity_type": order_type.pk, "reference": "ORD-T1", "data": json.dumps(NO_EMAIL)})
    assert response.status_code == 302
    order = Entity.objects.get(reference="ORD-T1")
    assert order.status == "received"

    data = {**NO_EMAIL, "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}}
    url = reverse("admin:entities_entity_change", args=[order.pk])
    assert admin_client.post(url, admin_form(admin_client, order, data=json.dumps(data))
                             ).status_code == 302
    order.refresh_from_db()
    assert order.status == "approved"
    failed = Run.objects.get(process__slug="ship-order")
    assert failed.status == Run.Status.FAILED

    client, _ = api_client_create(name="ERP")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(client=client)['accessToken']}")
    approval = ApprovalRequest.objects.get()
    assert api.post(f"/api/approvals/{approval.pk}/decide",
                    {"approved": True, "decidedBy": "admin"}, format="json").status_code == 200

    admin_client.post(reverse("admin:automation_run_retry", args=[failed.pk]))
    assert Run.objects.get(rerun_of=failed).status == Run.Status.COMPLETED  # a new attempt

    order.refresh_from_db()
    assert admin_client.post(url, admin_form(admin_client, order, move_to="shipped")
                             ).status_code == 302
    return order, client, api


def test_every_entry_in_order_with_actors(admin_client, order_type, processes):
    order, client, api = the_order_story(admin_client, order_type)

    body = api.get(f"/api/entities/{order.pk}/timeline?limit=200").json()
    entries = body["results"]
    assert body["next"] is None
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    story = [(e["kind"], e["summary"], e["actor"]) for e in entries
             if e["kind"] != "field_change" and e["kind"] != "requirements"]
    admin = {"type": "user", "name": "admin"}
    kinds = [kind for kind, _, _ in story]
    assert kinds[:2] == ["status", "status"] and kinds[-1] == "status"
    assert story[0] == ("status", "Created in received", admin)
    assert story[1] == ("status", "Moved from received to approved", admin)
    assert story[-1] == ("status", "Moved from approved to shipped", admin)
    middle = story[2:-1]
    runs = {summary.split()[1]: actor for kind, summary, actor in middle if kind == "run"}
    assert runs == {"approve-order": admin, "ship-order": admin}  # staff's edit started both
    step_failed = [(s, a) for k, s, a in middle if k == "step_failed"]
    assert step_failed == [("Step ship failed", {"type": "process", "name": "ship-order"})]
    requested = [a for k, _, a in middle if k == "approval_requested"]
    assert requested == [{"type": "process", "name": "approve-order"}]
    decided = [(s, a) for k, s, a in middle if k == "approval_decided"]
    assert decided == [("Approved by admin", {"type": "client", "name": client.key})]
    retried = [(s, a) for k, s, a in middle if k == "step_retried"]
    assert retried == [("Step ship retried", admin)]
    order_of = {kind: kinds.index(kind) for kind in reversed(kinds)}  # first position of each
    assert order_of["run"] < order_of["step_failed"] < order_of["approval_decided"] \
        < order_of["step_retried"]
    assert order_of["run"] < order_of["approval_requested"] < order_of["approval_decided"]

    changes = [e for e in entries if e["kind"] == "field_change"]
    assert changes[1]["details"]["changes"] == [{
        "field": "customer", "from": {"name": "Ada Lovelace"},
        "to": {"name": "Ada Lovelace", "email": "ada@example.com"}}]
    requirements = [e for e in entries if e["kind"] == "requirements"]
    assert requirements[-1]["details"]["nowMet"] == [
        {"status": "approved", "requirement": "Customer email present"}]


def test_kind_filter_and_cursor_pages(admin_client, order_type, processes):
    order, _, api = the_order_story(admin_client, order_type)
    url = f"/api/entities/{order.pk}/timeline"
    everything = api.get(url, {"limit": 200}).json()["results"]

    statuses = api.get(url, {"kind": "status"}).json()["results"]
    assert [e["summary"] for e in statuses] == [
        "Created in received", "Moved from received to approved",
        "Moved from approved to shipped"]
    two = api.get(url, {"kind": "run,approval_decided"}).json()["results"]
    assert sorted(e["kind"] for e in two) == ["approval_decided", "run", "run", "run"]  # + retry

    pages, cursor = [], None
    while True:
        body = api.get(url, {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        pages.append(body["results"])
        cursor = body["next"]
        if cursor is None:
            break
    assert len(pages) > 2 and all(len(page) <= 3 for page in pages)
    assert [e["id"] for page in pages for e in page] == [e["id"] for e in everything]


def test_bad_kind_or_cursor_is_a_400_naming_the_parameter(admin_client, order_type):
    order = Entity.objects.create(entity_type=order_type, reference="ORD-T2", status="received")
    client, _ = api_client_create(name="ERP")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(client=client)['accessToken']}")
    url = f"/api/entities/{order.pk}/timeline"
    bad_kind = api.get(url, {"kind": "gossip"})
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["error"]["fields"]
    bad_cursor = api.get(url, {"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["error"]["fields"]
    assert APIClient().get(url).status_code == 401


def test_links_and_webhooks_with_their_actors(order_type, processes):
    """A step that writes a link acts as its process; a delivered workflow webhook shows
    the receiving host only."""
    from automation.models import WebhookDelivery, WebhookSubscription
    from entities.actors import acting_as
    from entities.services import entity_create, external_link_upsert
    from entities.timeline import timeline

    with acting_as("client:erp"):
        order = entity_create(entity_type=order_type, reference="ORD-T3", data=NO_EMAIL)
    with acting_as("process:sync-deals"):
        external_link_upsert(entity=order, provider="hubspot", object_type="deal",
                             external_id="4711")
    run = Run.objects.create(process=ApiProcess.objects.get(slug="ship-order"),
                             version_id=ApiProcess.objects.get(slug="ship-order").current_version_id,
                             entity=order, status=Run.Status.COMPLETED)
    subscription = WebhookSubscription.objects.create(
        url="https://hooks.example.com/in?token=secret-token", events=["workflow.completed"],
        secret_encrypted="x")
    WebhookDelivery.objects.create(subscription=subscription, event="workflow.completed",
                                   payload={"id": str(run.pk)}, status="delivered",
                                   last_status_code=200, delivered_at=run.created_at)
    entries, _ = timeline(order, kinds={"status", "link", "webhook"})
    assert [(e.kind, e.actor) for e in entries] == [
        ("status", "client:erp"), ("link", "process:sync-deals"),
        ("webhook", "process:ship-order")]
    assert entries[2].details["host"] == "hooks.example.com"
    assert "secret-token" not in json.dumps([e.as_json() for e in entries])
