"""The OpenAPI document (3.1) describes our outbound deliveries in its `webhooks` section,
and what a run end sends matches the documented schema (JSON Schema in OpenAPI 3.1)."""

import uuid
from types import SimpleNamespace

import jsonschema
import pytest
import yaml
from django.test import Client
from django.utils import timezone

from automation.models import Run
from automation.services import notifications

pytestmark = pytest.mark.django_db

EVENTS = ("workflow.completed", "workflow.failed", "approval.requested", "approval.reminded",
          "approval.escalated", "process.paused")


@pytest.fixture
def document() -> dict:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_every_outbound_event_is_documented_with_its_signing_headers(document):
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == set(EVENTS)
    for event in EVENTS:
        operation = document["webhooks"][event]["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Entityflow-Signature", "X-Entityflow-Delivery", "webhook-id",
                "webhook-timestamp", "webhook-signature"} <= headers
        content = operation["requestBody"]["content"]["application/json"]
        example = content["examples"][event]["value"]
        jsonschema.validate(example, content["schema"])


@pytest.mark.parametrize("status", [Run.Status.COMPLETED, Run.Status.FAILED])
def test_what_a_run_end_sends_matches_the_documented_payload(document, monkeypatch, status):
    sent = []
    monkeypatch.setattr(notifications, "notify",
                        lambda event, payload, **_: sent.append(payload))
    for entity_id in (uuid.uuid4(), None):
        notifications.run_finished(SimpleNamespace(
            pk=uuid.uuid4(), status=status, entity_id=entity_id, finished_at=timezone.now(),
            process=SimpleNamespace(slug="purchase-approval"), traceparent=""))
    event = sent[0]["event"]
    schema = document["webhooks"][event]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    for payload in sent:
        jsonschema.validate(payload, schema)


def test_what_a_pause_sends_matches_the_documented_payload(document, monkeypatch):
    from automation.services import breaker
    from automation.services.processes import process_save

    sent = []
    monkeypatch.setattr(notifications, "notify", lambda event, payload: sent.append(payload))
    process = process_save(slug="loop", name="Loop", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    breaker.pause(process=process, reason="by hand")
    [payload] = sent
    schema = document["webhooks"]["process.paused"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    jsonschema.validate(payload, schema)
