"""The case flow over real HTTP against a live server, with the signed completion
webhook received on a loopback server."""

import time

import pytest
import requests

from automation.services.api_auth import api_client_create
from integrations.signing import verify
from tests.api.support import API_DB

pytestmark = API_DB

WEBHOOK_SECRET = "whsec-test-0123456789"


def wait_for(predicate, timeout: float = 10.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


@pytest.fixture
def credentials():
    client, secret = api_client_create(name="Case system")
    return {"key": client.key, "secret": secret}


def test_case_flow_over_http_with_the_completion_webhook(live_server, httpserver, credentials):
    base = live_server.url + "/api"
    http = requests.Session()
    tokens = http.post(f"{base}/auth/authorize", json=credentials, timeout=10).json()
    http.headers["Authorization"] = f"Bearer {tokens['accessToken']}"

    for function in (
        {"name": "greet", "action": "transform",
         "config": {"output": {"greeting": "'Hello ' + case.firstName",
                               "amount": "parameters.amount"}}},
        {"name": "double", "action": "transform",
         "config": {"output": {"greeting": "result.greeting", "amount": "result.amount * 2"}}},
    ):
        assert http.post(f"{base}/functions", json=function, timeout=10).status_code == 201
    definition = {"id": "greet-case", "name": "Greet case", "steps": [
        {"id": "greet", "type": "function", "function": "greet", "next": "double"},
        {"id": "double", "type": "function", "function": "double"}], "triggers": []}
    assert http.post(f"{base}/workflow-definitions", json=definition, timeout=10).status_code == 201

    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    subscribed = http.post(f"{base}/webhooks", json={
        "url": httpserver.url_for("/hook"), "events": ["workflow.completed"],
        "secret": WEBHOOK_SECRET}, timeout=10)
    assert subscribed.status_code == 201, subscribed.text

    case = http.post(f"{base}/cases", json={"firstName": "Ada", "lastName": "Lovelace",
                                            "companyName": "Analytical Engines"}, timeout=10)
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    params = http.post(f"{base}/parameters", json={"workflowDefinitionId": "greet-case",
                                                   "parameters": {"amount": 21}}, timeout=10)
    assert params.status_code == 201, params.text
    run = http.post(f"{base}/workflows/run", json={
        "caseId": case_id, "workflowDefinitionId": "greet-case",
        "parametersId": params.json()["id"]}, timeout=10)
    assert run.status_code in (201, 202), run.text
    run_id = run.json()["id"]
    assert run.json()["caseId"] == case_id

    status = wait_for(lambda: (s := http.get(f"{base}/workflows/{run_id}", timeout=10).json())
                      ["status"] in ("completed", "failed") and s)
    assert status == {"id": run_id, "caseId": case_id, "status": "completed"}
    result = http.get(f"{base}/workflows/{run_id}/result", timeout=10).json()
    assert result["result"] == {"greeting": "Hello Ada", "amount": 42}

    assert wait_for(lambda: len(httpserver.log) >= 1), "no completion webhook arrived"
    request, _ = httpserver.log[0]
    verify(WEBHOOK_SECRET, request.get_data(), request.headers.get("X-Entityflow-Signature"))
    assert request.headers.get("X-Entityflow-Delivery")
    body = request.get_json()
    assert body["event"] == "workflow.completed"
    assert {k: body[k] for k in ("id", "caseId", "status", "workflowDefinitionId")} == {
        "id": run_id, "caseId": case_id, "status": "completed",
        "workflowDefinitionId": "greet-case"}
    assert body["finishedAt"]
