"""Workflow definitions, triggering, executions and events through the API."""

import pytest

from automation.models import ApiProcess, Run
from automation.services.api_auth import api_client_create
from tests.api.support import (
    API_DB,
    APPROVE_PURCHASE,
    PURCHASE_FUNCTIONS,
    assert_error,
    bearer_client,
)

pytestmark = API_DB


@pytest.fixture
def approve_purchase(api):
    for spec in PURCHASE_FUNCTIONS:
        assert api.post("/api/functions", spec, format="json").status_code == 201
    response = api.post("/api/workflow-definitions", APPROVE_PURCHASE, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def trigger(api, total, **headers):
    response = api.post("/api/workflow-definitions/approve-purchase/trigger",
                        {"input": {"total": total}}, format="json", **headers)
    assert response.status_code == 202, response.content
    return response.json()["executionId"]


def test_creating_the_design_definition_verbatim(approve_purchase, api):
    assert approve_purchase["id"] == "approve-purchase"  # slug generated from the name
    assert approve_purchase["steps"] == APPROVE_PURCHASE["steps"]
    assert approve_purchase["triggers"] == APPROVE_PURCHASE["triggers"]
    assert approve_purchase["enabled"] is True and approve_purchase["version"] == 1
    assert api.get("/api/workflow-definitions/approve-purchase").json() == approve_purchase
    listed = api.get("/api/workflow-definitions").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == "approve-purchase"


def test_a_big_purchase_waits_for_approval_then_completes(approve_purchase, api):
    execution = trigger(api, 20000)
    body = api.get(f"/api/executions/{execution}").json()
    assert body["status"] == "waiting"
    assert body["workflowDefinitionId"] == "approve-purchase" and body["version"] == 1

    approval = api.get("/api/approvals?status=pending").json()["results"][0]
    assert approval["executionId"] == execution and approval["step"] == "require-approval"
    decided = api.post(f"/api/approvals/{approval['id']}/decide",
                       {"approved": True, "comment": "ok", "decidedBy": "manager@example.com"},
                       format="json")
    assert decided.status_code == 200, decided.content
    assert decided.json()["status"] == "approved"

    body = api.get(f"/api/executions/{execution}?expand=steps").json()
    assert body["status"] == "completed"
    assert body["result"] == {"finalized": True, "total": 20000}
    assert [s["id"] for s in body["steps"]] == [
        "calculate", "check", "require-approval", "finalize"]
    approval_step = body["steps"][2]
    assert approval_step["output"]["approved"] is True
    assert approval_step["output"]["decidedBy"] == "manager@example.com"  # the one who settled it
    assert {"type", "status", "attempts", "input", "output", "error", "startedAt",
            "finishedAt", "index"} <= set(body["steps"][0])


def test_a_small_purchase_completes_without_approval(approve_purchase, api):
    execution = trigger(api, 50)
    body = api.get(f"/api/executions/{execution}?expand=steps").json()
    assert body["status"] == "completed" and body["error"] is None
    assert [s["id"] for s in body["steps"]] == ["calculate", "check", "auto-approve", "finalize"]
    assert api.get("/api/approvals").json()["count"] == 0


def test_purchase_created_events_start_the_process(approve_purchase, api):
    big = api.post("/api/events", {"type": "purchase.created", "source": "shop",
                                   "timestamp": "2025-01-01T10:00:00Z", "data": {"total": 20000}},
                   format="json")
    assert big.status_code == 202, big.content
    [execution] = big.json()["executions"]
    assert api.get(f"/api/executions/{execution}").json()["status"] == "waiting"

    small = api.post("/api/events", {"type": "purchase.created", "data": {"total": 50}},
                     format="json").json()
    [execution] = small["executions"]
    assert api.get(f"/api/executions/{execution}").json()["status"] == "completed"


def test_an_event_whose_trigger_condition_is_false_starts_nothing(approve_purchase, api):
    none = api.post("/api/events", {"type": "purchase.created", "data": {"total": 0}},
                    format="json")
    assert none.status_code == 202 and none.json()["executions"] == []
    one = api.post("/api/events", {"type": "purchase.created", "data": {"total": 1}},
                   format="json").json()
    assert len(one["executions"]) == 1
    other = api.post("/api/events", {"type": "order.created", "data": {"total": 1}},
                     format="json").json()
    assert other["executions"] == []
    assert Run.objects.count() == 1


def test_entity_events_cannot_be_published(api):
    error = assert_error(api.post("/api/events", {"type": "entity.updated"}, format="json"), 422)
    assert "type" in error["fields"]


def test_idempotency_key_gives_one_run_per_client(approve_purchase, api):
    first = trigger(api, 50, HTTP_IDEMPOTENCY_KEY="order-42")
    again = trigger(api, 50, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first == again and Run.objects.count() == 1

    other = bearer_client(api_client_create(name="Another system")[0])
    assert trigger(other, 50, HTTP_IDEMPOTENCY_KEY="order-42") != first
    assert Run.objects.count() == 2

    api.post("/api/workflow-definitions", {**APPROVE_PURCHASE, "id": "other"}, format="json")
    reused = api.post("/api/workflow-definitions/other/trigger", {"input": {"total": 5}},
                      format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert_error(reused, 409, "idempotency_key_reused")
    assert_error(api.post("/api/workflow-definitions/other/trigger", {}, format="json",
                          HTTP_IDEMPOTENCY_KEY="k" * 201), 400)


def test_put_patch_and_delete(approve_purchase, api):
    changed = {**APPROVE_PURCHASE, "description": "Big purchases need a manager."}
    changed["steps"] = [*APPROVE_PURCHASE["steps"]]
    changed["steps"][1] = {**changed["steps"][1], "condition": "result.total > 5000"}
    put = api.put("/api/workflow-definitions/approve-purchase", changed, format="json").json()
    assert put["version"] == 2 and put["description"] == "Big purchases need a manager."

    patched = api.patch("/api/workflow-definitions/approve-purchase", {"name": "Approve"},
                        format="json").json()
    assert patched["name"] == "Approve" and patched["version"] == 2  # same definition
    assert patched["steps"][1]["condition"] == "result.total > 5000"

    execution = trigger(api, 50)
    assert api.delete("/api/workflow-definitions/approve-purchase").status_code == 204
    assert ApiProcess.objects.get(slug="approve-purchase").enabled is False
    assert api.get(f"/api/executions/{execution}").json()["version"] == 2
    assert_error(api.post("/api/workflow-definitions/approve-purchase/trigger", {},
                          format="json"), 409, "process_disabled")


def test_invalid_patch_saves_nothing(approve_purchase, api):
    response = api.patch("/api/workflow-definitions/approve-purchase",
                         {"steps": [{"id": "a", "type": "teleport"}]}, format="json")
    error = assert_error(response, 422)
    assert "steps[0].type" in error["fields"]
    assert api.get("/api/workflow-definitions/approve-purchase").json()["version"] == 1


def test_generated_ids_do_not_collide_and_explicit_ids_are_kept(api, approve_purchase):
    again = api.post("/api/workflow-definitions", APPROVE_PURCHASE, format="json").json()
    assert again["id"] == "approve-purchase-2"
    explicit = api.post("/api/workflow-definitions", {**APPROVE_PURCHASE, "id": "purchases"},
                        format="json").json()
    assert explicit["id"] == "purchases"
    assert_error(api.post("/api/workflow-definitions", {**APPROVE_PURCHASE, "id": "purchases"},
                          format="json"), 409)
    assert_error(api.post("/api/workflow-definitions", {**APPROVE_PURCHASE, "entityType": "nope"},
                          format="json"), 422)


def test_runs_list_filters(approve_purchase, api):
    waiting = trigger(api, 20000)
    done = trigger(api, 50)
    all_runs = api.get("/api/runs").json()
    assert all_runs["count"] == 2
    assert [r["id"] for r in api.get("/api/runs?status=waiting").json()["results"]] == [waiting]
    assert [r["id"] for r in api.get("/api/runs?status=completed&process=approve-purchase")
            .json()["results"]] == [done]
    assert api.get("/api/runs?createdFrom=2999-01-01T00:00:00Z").json()["count"] == 0
    assert api.get("/api/runs?limit=1").json()["next"] is not None
