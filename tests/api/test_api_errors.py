"""Each 4xx of docs/rest-api.md, produced for real, in the one error format; and the 500 of an
unhandled exception, in the same format."""

import logging
import uuid

import pytest
from django.core.exceptions import RequestDataTooBig
from rest_framework.test import APIClient

from automation.models import ApiClient
from config.api_errors import api_exception_handler
from tests.api.failing_urls import SECRET
from tests.api.support import API_DB, APPROVE_PURCHASE, PURCHASE_FUNCTIONS, assert_error

pytestmark = API_DB


def test_400_malformed_json(api):
    response = api.post("/api/cases", data=b'{"firstName": ', content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_400_body_that_is_not_an_object(api):
    assert_error(api.post("/api/cases", [1, 2], format="json"), 400, "bad_request")


def test_400_unreadable_query_parameter(api):
    error = assert_error(api.get("/api/runs?createdFrom=yesterday"), 400, "bad_request")
    assert "createdFrom" in error["fields"]


def test_401_without_credentials(anon):
    response = anon.get("/api/runs")
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_403_deciding_for_someone_who_is_not_an_approver(api):
    for spec in PURCHASE_FUNCTIONS:
        assert api.post("/api/functions", spec, format="json").status_code == 201
    assert api.post("/api/workflow-definitions", APPROVE_PURCHASE, format="json").status_code == 201
    execution = api.post("/api/workflow-definitions/approve-purchase/trigger",
                         {"input": {"total": 20000}}, format="json").json()["executionId"]
    approval = api.get("/api/approvals?status=pending").json()["results"][0]
    assert approval["executionId"] == execution
    response = api.post(f"/api/approvals/{approval['id']}/decide",
                        {"approved": True, "decidedBy": "intruder@example.com"}, format="json")
    assert_error(response, 403, "forbidden")


def test_404_unknown_object_and_unknown_endpoint(api):
    assert_error(api.get(f"/api/cases/{uuid.uuid4()}"), 404, "not_found")
    assert_error(api.get("/api/cases/not-a-uuid"), 404, "not_found")
    assert_error(api.get("/api/no/such/thing"), 404, "not_found")
    # a path with a line break in it (schemathesis found this one as Django's HTML 404)
    assert_error(api.get("/api/workflows/%C3%B7%0A%29k/result"), 404, "not_found")
    assert_error(api.get("/api/no/such/thing%0A"), 404, "not_found")


def test_405_is_in_the_one_format_too(api):
    assert_error(api.delete("/api/events"), 405, "method_not_allowed")


def test_409_result_while_the_run_has_not_finished(api):
    for spec in PURCHASE_FUNCTIONS:
        api.post("/api/functions", spec, format="json")
    api.post("/api/workflow-definitions", APPROVE_PURCHASE, format="json")
    execution = api.post("/api/workflow-definitions/approve-purchase/trigger",
                         {"input": {"total": 20000}}, format="json").json()["executionId"]
    assert api.get(f"/api/workflows/{execution}").json()["status"] == "waiting"
    assert_error(api.get(f"/api/workflows/{execution}/result"), 409, "not_finished")


def test_409_creating_what_already_exists(api):
    spec = PURCHASE_FUNCTIONS[0]
    assert api.post("/api/functions", spec, format="json").status_code == 201
    assert_error(api.post("/api/functions", spec, format="json"), 409, "conflict")


def test_413_body_over_the_limit(api, settings):
    settings.ENTITYFLOW_MAX_BODY_BYTES = 1000
    big = {"firstName": "x" * 2000}
    error = assert_error(api.post("/api/cases", big, format="json"), 413, "payload_too_large")
    assert "1000" in error["message"]


def test_413_also_below_djangos_own_limit(api, settings):
    settings.ENTITYFLOW_MAX_BODY_BYTES = 10_000_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_error(api.post("/api/cases", {"firstName": "x" * 2000}, format="json"), 413)


def test_djangos_request_data_too_big_becomes_413_not_400_or_500():
    response = api_exception_handler(RequestDataTooBig("too big"), {})
    assert response.status_code == 413
    assert response.data["error"]["code"] == "payload_too_large"


def test_422_invalid_definition_names_the_field(api):
    definition = {**APPROVE_PURCHASE, "steps": [*APPROVE_PURCHASE["steps"]]}
    definition["steps"][2] = {**definition["steps"][2], "next": "nowhere"}
    error = assert_error(api.post("/api/workflow-definitions", definition, format="json"), 422,
                         "invalid_definition")
    assert error["fields"]["steps[2].next"] == ["unknown step 'nowhere'"]
    assert "steps[0].function" in error["fields"]  # calculate-total does not exist yet


def test_422_invalid_input_names_the_field(api):
    error = assert_error(api.post("/api/parameters", {"workflowDefinitionId": "nope",
                                                      "parameters": []}, format="json"), 422)
    assert error["fields"] == {"parameters": ["Expected a JSON object."]}


def test_429_when_the_client_exceeds_its_rate(api, api_client_row):
    ApiClient.objects.filter(pk=api_client_row.pk).update(rate_limit_per_minute=2)
    assert api.get("/api/runs").status_code == 200
    assert api.get("/api/runs").status_code == 200
    response = api.get("/api/runs")
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_rate_limits_are_per_client(api, api_client_row):
    from automation.services.api_auth import api_client_create, tokens_issue

    ApiClient.objects.filter(pk=api_client_row.pk).update(rate_limit_per_minute=1)
    other, _ = api_client_create(name="Other")
    other_api = APIClient()
    other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(client=other)['accessToken']}")
    assert api.get("/api/runs").status_code == 200
    assert api.get("/api/runs").status_code == 429
    assert other_api.get("/api/runs").status_code == 200


@pytest.mark.urls("tests.api.failing_urls")
def test_500_an_unhandled_exception_is_in_the_one_format_and_logged_with_its_traceback(
        tokens, caplog):
    client = APIClient(raise_request_exception=False)  # answer, do not re-raise in the test
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/failing")
    error = assert_error(response, 500, "server_error")
    assert response["Content-Type"] == "application/json"
    assert error["fields"] == {}
    assert SECRET not in response.content.decode() and "RuntimeError" not in error["message"]
    logged = [r for r in caplog.records if r.name == "django.request"]
    assert len(logged) == 1, [r.getMessage() for r in logged]  # once, not again by Django
    assert logged[0].levelno == logging.ERROR and "/api/failing" in logged[0].getMessage()
    assert logged[0].exc_info and SECRET in str(logged[0].exc_info[1])
