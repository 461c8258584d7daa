"""POST /api/entities/{id}/explain: the answer over HTTP, its errors, who may ask."""

import pytest

from automation.models import Run
from automation.services.processes import process_save
from entities.models import EntityEvent
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

NO_EMAIL = {"customer": {"name": "Ada Lovelace"}, "total": 120}


@pytest.fixture
def order(order_type):
    process_save(slug="on-approved", name="On approved", entity_type=order_type, definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "status", "config": {"entityType": "order", "status": "approved"},
                      "condition": "entity.data.total >= 100"}]})
    return make_order(reference="ORD-E1", data=NO_EMAIL)


def url(order):
    return f"/api/entities/{order.pk}/explain"


def test_api_client_asks_and_nothing_is_written(api, order):
    events = EntityEvent.objects.count()
    response = api.post(url(order), {"changes": {"customer": {"email": "a@example.com"}}},
                        format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == {"from": "received", "to": "approved", "passesThrough": ["approved"]}
    [process] = body["processes"]
    assert process["process"] == "on-approved" and process["wouldStart"] is True
    assert process["firstSteps"][0]["id"] == "a"
    assert EntityEvent.objects.count() == events and Run.objects.count() == 0


def test_staff_session_with_csrf_token(staff, order):
    staff.get("/admin/")  # renders a form, which sets the csrftoken cookie (as the page does)
    token = staff.cookies["csrftoken"].value
    refused = staff.post(url(order), {"status": "approved"}, format="json")
    assert refused.status_code == 403  # no CSRF token: DRF's session check
    response = staff.post(url(order), {"status": "approved"}, format="json",
                          HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    transition = response.json()["transition"]
    assert transition["allowed"] is False
    assert transition["reasons"] == ["The customer's email address is missing."]
    assert response.json()["processes"][0]["reasons"][0]["code"] == "trigger_not_reached"


def test_a_patch_the_schema_refuses_is_a_422_naming_the_field(api, order):
    response = api.post(url(order), {"changes": {"total": "lots"}}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert list(error["fields"]) == ["changes.total"]
    assert api.post(url(order), {"changes": [1]}, format="json").status_code == 422
    assert api.post(url(order), [1], format="json").status_code == 400


def test_unknown_entity_and_anonymous(api, anon, order):
    assert api.post("/api/entities/00000000-0000-0000-0000-000000000000/explain", {},
                    format="json").status_code == 404
    assert anon.post(url(order), {}, format="json").status_code == 401


def test_the_schema_documents_explain_and_the_timeline(anon):
    paths = anon.get("/api/schema/", {"format": "json"}).json()["paths"]
    explain = paths["/api/entities/{id}/explain"]["post"]
    assert "200" in explain["responses"] and "422" in explain["responses"]
    timeline = paths["/api/entities/{id}/timeline"]["get"]
    assert {p["name"] for p in timeline["parameters"]} >= {"id", "kind", "cursor", "limit"}
