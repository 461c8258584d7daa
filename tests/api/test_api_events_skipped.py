"""A trigger whose condition does not hold, or cannot be evaluated, is kept on the event
as skipped with its reason: in POST /api/events' answer and on the event's admin page."""

from django.urls import reverse

from automation.models import ProcessTrigger, Run
from automation.services.processes import process_save
from entities.models import EntityEvent
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

NOOP = [{"id": "done", "type": "function", "function": "noop"}]


def on_purchase(slug, condition):
    return process_save(slug=slug, name=slug, definition={"steps": NOOP, "triggers": [
        {"type": "event", "config": {"eventType": "purchase.created"}, "condition": condition}]})


def test_skipped_triggers_are_answered_and_shown_on_the_event(api, admin_client):
    on_purchase("starts", "event.data.total > 0")
    small = on_purchase("big-only", "event.data.total > 1000")
    broken = on_purchase("broken", "event.data.customer.name == 'x'")  # no customer: an error

    response = api.post("/api/events", {"type": "purchase.created", "data": {"total": 5}},
                        format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert len(body["executions"]) == 1
    skipped = {s["process"]: s for s in body["skipped"]}
    assert set(skipped) == {"big-only", "broken"}
    assert skipped["big-only"]["reason"] == "The trigger's condition is false."
    assert skipped["big-only"]["trigger"] == ProcessTrigger.objects.get(process=small).pk
    assert skipped["broken"]["reason"].startswith("The trigger's condition could not be evaluated")
    assert "customer" in skipped["broken"]["reason"]
    assert ProcessTrigger.objects.get(process=broken).skipped_count == 1
    assert Run.objects.count() == 1

    event = EntityEvent.objects.get(pk=body["id"])
    assert event.skipped == body["skipped"]
    page = admin_client.get(reverse("admin:entities_entityevent_change", args=[event.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "skipped triggers" in html.lower()
    assert "broken" in html and "could not be evaluated" in html


def test_an_event_nothing_skips_answers_an_empty_list(api):
    on_purchase("starts", "event.data.total > 0")
    body = api.post("/api/events", {"type": "purchase.created", "data": {"total": 5}},
                    format="json").json()
    assert body["skipped"] == [] and len(body["executions"]) == 1
    error = assert_error(api.post("/api/events", {"type": "purchase.created", "total": 5},
                                  format="json"), 422)
    assert "total" in error["fields"]
