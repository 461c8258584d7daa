"""Real objects through every operation, each response checked against /api/schema/:
the generated run (test_api_schema) mostly meets 404s and 422s, this one meets the 2xx
shapes (and documented 409s) too."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from automation.services.api_auth import api_client_create, tokens_issue
from tests.api.support import API_DB, APPROVE_PURCHASE, PURCHASE_FUNCTIONS

pytestmark = API_DB
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def call():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    client, secret = api_client_create(name="Examples", rate_limit_per_minute=0)
    headers = {"Authorization": f"Bearer {tokens_issue(client=client)['accessToken']}"}

    def call(method, path, expect, *, auth=True, params=None, query=None, body=None):
        operation = schema[path][method]
        kwargs = {"path_parameters": params or {}, "query": query or {}}
        if body is not None:
            kwargs["body"] = body
            kwargs["media_type"] = "application/json"
        case = operation.Case(**kwargs)
        response = case.call_and_validate(headers=headers if auth else {}, checks=CHECKS)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    call.credentials = {"key": client.key, "secret": secret}
    return call


def test_definitions_runs_events_and_approvals(call):
    for spec in PURCHASE_FUNCTIONS:
        call("POST", "/api/functions", 201, body=spec)
    call("GET", "/api/functions", 200)
    call("GET", "/api/functions/{name}", 200, params={"name": "calculate-total"})
    call("PUT", "/api/functions/{name}", 200, params={"name": "calculate-total"},
         body={"action": "transform", "config": {"output": {"total": "input.total"}}})
    call("POST", "/api/workflow-definitions", 201, body=APPROVE_PURCHASE)
    call("DELETE", "/api/functions/{name}", 409, params={"name": "calculate-total"})
    slug = {"id": "approve-purchase"}
    call("GET", "/api/workflow-definitions", 200)
    call("GET", "/api/workflow-definitions/{id}", 200, params=slug)
    call("PUT", "/api/workflow-definitions/{id}", 200, params=slug, body=APPROVE_PURCHASE)
    call("PATCH", "/api/workflow-definitions/{id}", 200, params=slug, body={"description": "x"})

    waiting = call("POST", "/api/workflow-definitions/{id}/trigger", 202, params=slug,
                   body={"input": {"total": 20000}})["executionId"]
    done = call("POST", "/api/workflow-definitions/{id}/trigger", 202, params=slug,
                body={"input": {"total": 5}})["executionId"]
    call("GET", "/api/executions/{id}", 200, params={"id": done}, query={"expand": "steps"})
    call("GET", "/api/executions/{id}", 200, params={"id": waiting})
    call("GET", "/api/workflows/{id}", 200, params={"id": done})
    call("GET", "/api/workflows/{id}/result", 200, params={"id": done})
    call("GET", "/api/workflows/{id}/result", 409, params={"id": waiting})
    call("GET", "/api/runs", 200, query={"status": "completed"})
    call("POST", "/api/events", 202, body={"type": "purchase.created", "data": {"total": 3}})

    approval = call("GET", "/api/approvals", 200)["results"][0]
    call("POST", "/api/approvals/{id}/decide", 200, params={"id": approval["id"]},
         body={"approved": True, "decidedBy": "manager@example.com"})
    call("DELETE", "/api/workflow-definitions/{id}", 204, params=slug)


def test_cases_entities_batches_webhooks_and_auth(call, greeting_process, order_type):
    case = call("POST", "/api/cases", 201, body={"firstName": "Ada", "email": "ada@example.com"})
    call("GET", "/api/cases/{id}", 200, params={"id": case["id"]})
    call("GET", "/api/cases", 200, query={"email": "ADA@example.com"})
    call("GET", "/api/cases", 400, query={"offset": "-1"})
    params = call("POST", "/api/parameters", 201,
                  body={"workflowDefinitionId": "greet-case", "parameters": {"amount": 1}})
    call("GET", "/api/parameters", 200, query={"workflowDefinitionId": "greet-case"})
    call("GET", "/api/parameters/{id}", 200, params={"id": params["id"]})
    call("POST", "/api/cases", 422, body={"firstName": 12})
    run = call("POST", "/api/workflows/run", 202, body={
        "caseId": case["id"], "workflowDefinitionId": "greet-case", "parametersId": params["id"]})
    call("GET", "/api/workflows/{id}/result", 200, params={"id": run["id"]})

    call("GET", "/api/entity-types", 200)
    call("GET", "/api/entity-types/{key}", 200, params={"key": "order"})
    call("GET", "/api/entities", 200, query={"type": "case"})
    call("GET", "/api/entities/{id}", 200, params={"id": case["id"]})
    call("POST", "/api/entities/{id}/process", 200, params={"id": case["id"]},
         body={"process": "greet-case", "dryRun": True})
    call("POST", "/api/entities/{id}/process", 202, params={"id": case["id"]},
         body={"process": "greet-case"})

    batch = call("POST", "/api/batches", 201, body={"entityType": "case", "process": "greet-case",
                                                    "filter": {"status": "open"}})
    call("GET", "/api/batches/{id}", 200, params={"id": batch["id"]})
    call("POST", "/api/batches/{id}/retry-failed", 200, params={"id": batch["id"]})
    # every run of the batch has finished (steps run at once here): nothing to cancel
    call("POST", "/api/batches/{id}/cancel", 409, params={"id": batch["id"]})

    hook = call("POST", "/api/webhooks", 201, body={"url": "https://example.com/h",
                                                    "events": ["*"], "secret": "0123456789"})
    call("GET", "/api/webhooks", 200)
    call("DELETE", "/api/webhooks/{id}", 204, params={"id": hook["id"]})

    tokens = call("POST", "/api/auth/authorize", 200, auth=False, body=call.credentials)
    call("POST", "/api/auth/refresh", 200, auth=False,
         body={"refreshToken": tokens["refreshToken"]})
    call("POST", "/api/auth/refresh", 401, auth=False,
         body={"refreshToken": tokens["refreshToken"]})


def test_agents(call):
    call("POST", "/api/functions", 201, body={
        "name": "sentiment-analysis", "action": "noop", "config": {},
        "paramsSchema": {"type": "object", "properties": {"text": {"type": "string"}}}})
    agent = {"key": "content-reviewer", "instructions": "Review; answer in JSON.",
             "tools": ["sentiment-analysis"], "outputSchema": {"type": "object"},
             "maxIterations": 4, "inputPrice": 0.15}
    call("POST", "/api/agents", 201, body=agent)
    call("POST", "/api/agents", 409, body=agent)
    call("POST", "/api/agents", 422, body={**agent, "key": "other", "tools": ["ghost"]})
    key = {"key": "content-reviewer"}
    call("GET", "/api/agents", 200)
    call("GET", "/api/agents/{key}", 200, params=key)
    call("PUT", "/api/agents/{key}", 200, params=key, body={"instructions": "JSON, briefly."})
    assert call("PATCH", "/api/agents/{key}", 200, params=key,
                body={"maxTokens": 1000})["version"] == 3
    call("GET", "/api/agents/{key}", 404, params={"key": "nobody"})


def test_every_operation_has_an_example_here():
    """Each operation of /api/schema/ is called above with a real object (so each has a
    checked example: docs/rest-api.md#openapi-what-the-document-promises)."""
    import re
    from pathlib import Path

    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    documented = {(op.method.upper(), op.path) for op in
                  (result.ok() for result in schema.get_all_operations())}
    source = Path(__file__).read_text()
    called = set(re.findall(r'call\("(GET|POST|PUT|PATCH|DELETE)", "(/api/[^"]+)"', source))
    assert documented - called == set()
    assert called - documented == set()


def test_entity_writes_explain_timeline_and_run_control(call, greeting_process, order_type):
    from tests.factories import order_data

    order = call("POST", "/api/entities", 201, body={"type": "order", "reference": "ORD-EX",
                                                     "data": order_data()})
    one = {"id": order["id"]}
    call("PATCH", "/api/entities/{id}", 200, params=one,
         body={"data": {"note": "gift"}, "version": order["version"]})
    call("PATCH", "/api/entities/{id}", 409, params=one,
         body={"data": {"note": "stale"}, "version": order["version"]})
    call("POST", "/api/entities/{id}/explain", 200, params=one, body={"changes": {"total": 1}})
    call("POST", "/api/entities/{id}/transition", 200, params=one, body={"to": "shipped"})
    call("POST", "/api/entities/{id}/transition", 409, params=one, body={"to": "received"})
    call("GET", "/api/entities/{id}/timeline", 200, params=one, query={"kind": "status"})
    ref = {"type": "order", "reference": "ORD-SYNC"}
    call("PUT", "/api/entity-types/{type}/entities/{reference}", 201, params=ref,
         body={"data": order_data()})
    call("PUT", "/api/entity-types/{type}/entities/{reference}", 200, params=ref,
         body={"data": order_data()})

    case = call("POST", "/api/cases", 201, body={"firstName": "Ada"})
    run = call("POST", "/api/workflows/run", 202, body={
        "caseId": case["id"], "workflowDefinitionId": "greet-case"})
    done = {"id": run["id"]}
    call("POST", "/api/executions/{id}/cancel", 409, params=done)  # it has finished
    call("POST", "/api/executions/{id}/retry", 201, params=done, body={})  # it failed
    call("POST", "/api/executions/{id}/rerun", 200, params=done,
         body={"fromStep": "double", "preview": True})
    call("POST", "/api/executions/{id}/rerun", 201, params=done, body={"fromStep": "double"})
    call("POST", "/api/executions/rerun", 200, body={
        "filter": {"process": "greet-case", "status": "failed"}, "ratePerSecond": 5,
        "preview": True})
    batch = call("POST", "/api/batches", 201, body={"entityType": "case", "process": "greet-case",
                                                    "filter": {"status": "open"}})
    call("POST", "/api/batches/{id}/pause", 409, params={"id": batch["id"]})  # finished
    call("POST", "/api/batches/{id}/resume", 409, params={"id": batch["id"]})


def test_pause_and_resume(call, greeting_process):
    one = {"id": "greet-case"}
    call("POST", "/api/workflow-definitions/{id}/resume", 409, params=one, body={})  # not paused
    call("POST", "/api/workflow-definitions/{id}/pause", 200, params=one,
         body={"reason": "HubSpot maintenance"})
    call("POST", "/api/workflow-definitions/{id}/resume", 200, params=one,
         body={"held": "release"})
    call("POST", "/api/pause-all", 200, body={})
    call("POST", "/api/resume-all", 200, body={"held": "discard"})
