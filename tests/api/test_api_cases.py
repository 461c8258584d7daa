"""The case flow, approvals as staff, and webhook subscriptions (in-process client)."""

import uuid

from automation.models import WebhookSubscription
from automation.services.api_auth import api_client_create
from automation.services.processes import process_save
from tests.api.support import API_DB, assert_error, bearer_client

pytestmark = API_DB

ADA = {"firstName": "Ada", "lastName": "Lovelace", "personalNumber": "18151210-1234",
       "phone": "+44 20 7946 0000", "companyName": "Analytical Engines Ltd",
       "companyNumber": "AE-1843", "companyAddress": "London"}


def test_create_and_get_a_case(api):
    created = api.post("/api/cases", ADA, format="json")
    assert created.status_code == 201, created.content
    case = created.json()
    assert {k: case[k] for k in ADA} == ADA
    assert case["status"] == "open" and case["reference"].startswith("CASE-") and case["createdAt"]
    assert api.get(f"/api/cases/{case['id']}").json() == case
    entity = api.get(f"/api/entities/{case['id']}").json()
    assert entity["type"] == "case" and entity["data"] == ADA


def test_case_fields_are_validated(api):
    error = assert_error(api.post("/api/cases", {"firstName": "x" * 101}, format="json"), 422)
    assert "firstName" in error["fields"]


def test_case_run_with_parameters(api, greeting_process):
    case = api.post("/api/cases", ADA, format="json").json()
    params = api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                          "parameters": {"amount": 21}}, format="json")
    assert params.status_code == 201, params.content
    assert params.json()["workflowDefinitionId"] == "greet-case"
    run = api.post("/api/workflows/run", {
        "caseId": case["id"], "workflowDefinitionId": "greet-case",
        "parametersId": params.json()["id"]}, format="json")
    assert run.status_code == 202, run.content
    assert set(run.json()) == {"id", "caseId", "status"} and run.json()["caseId"] == case["id"]
    status = api.get(f"/api/workflows/{run.json()['id']}").json()
    assert status == {"id": run.json()["id"], "caseId": case["id"], "status": "completed"}
    result = api.get(f"/api/workflows/{run.json()['id']}/result").json()
    assert result["result"] == {"greeting": "Hello Ada", "amount": 42}
    assert result["createdAt"] and result["status"] == "completed"


def test_case_run_references_are_checked(api, greeting_process):
    case = api.post("/api/cases", ADA, format="json").json()
    for body, field in [
        ({"caseId": str(uuid.uuid4()), "workflowDefinitionId": "greet-case"}, "caseId"),
        ({"caseId": case["id"], "workflowDefinitionId": "nope"}, "workflowDefinitionId"),
        ({"caseId": case["id"], "workflowDefinitionId": "greet-case",
          "parametersId": str(uuid.uuid4())}, "parametersId"),
    ]:
        error = assert_error(api.post("/api/workflows/run", body, format="json"), 422)
        assert field in error["fields"]


def test_staff_see_and_decide_their_own_approvals(staff, staff_user, api):
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}]})
    process_save(slug="ask-other", name="Ask other", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["someone-else"]}}]})
    for slug in ("ask", "ask-other"):
        api.post(f"/api/workflow-definitions/{slug}/trigger", {}, format="json")
    assert api.get("/api/approvals").json()["count"] == 2  # an API client sees all

    mine = staff.get("/api/approvals?status=pending").json()
    assert mine["count"] == 1 and mine["results"][0]["workflowDefinitionId"] == "ask"
    staff.get("/admin/")
    decided = staff.post(f"/api/approvals/{mine['results'][0]['id']}/decide",
                         {"approved": False, "comment": "no", "decidedBy": "someone-else"},
                         format="json", HTTP_X_CSRFTOKEN=staff.cookies["csrftoken"].value)
    assert decided.status_code == 200, decided.content
    assert decided.json()["decisions"][0]["decidedBy"] == "manager"  # staff decide as themselves
    assert staff.get("/api/approvals?status=rejected").json()["count"] == 1


def test_api_clients_must_name_who_they_decide_for(api):
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}]})
    api.post("/api/workflow-definitions/ask/trigger", {}, format="json")
    approval = api.get("/api/approvals").json()["results"][0]
    error = assert_error(api.post(f"/api/approvals/{approval['id']}/decide", {"approved": True},
                                  format="json"), 422)
    assert "decidedBy" in error["fields"]
    ok = api.post(f"/api/approvals/{approval['id']}/decide",
                  {"approved": True, "decidedBy": "manager@example.com"}, format="json")
    assert ok.status_code == 200
    again = api.post(f"/api/approvals/{approval['id']}/decide",
                     {"approved": True, "decidedBy": "manager@example.com"}, format="json")
    assert_error(again, 409)


def test_webhook_subscriptions_never_return_the_secret(api):
    created = api.post("/api/webhooks", {
        "url": "https://example.com/hook", "secret": "s3cret-value",
        "events": ["workflow.completed", "workflow.failed"]}, format="json")
    assert created.status_code == 201, created.content
    assert "secret" not in created.json() and "s3cret-value" not in created.content.decode()
    listed = api.get("/api/webhooks").json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    assert WebhookSubscription.objects.get().secret_encrypted  # stored for signing

    other = bearer_client(api_client_create(name="Other")[0])
    assert other.get("/api/webhooks").json()["count"] == 0
    assert_error(other.delete(f"/api/webhooks/{created.json()['id']}"), 404)

    assert api.delete(f"/api/webhooks/{created.json()['id']}").status_code == 204
    assert api.get("/api/webhooks").json()["count"] == 0
    assert_error(api.delete(f"/api/webhooks/{created.json()['id']}"), 404)


def test_webhook_input_is_validated(api):
    error = assert_error(api.post("/api/webhooks", {"url": "not a url", "events": ["nope"],
                                                    "secret": "short"}, format="json"), 422)
    assert {"url", "events[0]", "secret"} <= set(error["fields"])
