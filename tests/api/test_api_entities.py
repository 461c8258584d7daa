"""Entity types, entities, processing one entity (and its dry run), batches."""

import pytest

from automation.models import Run
from automation.services.processes import process_save
from entities.models import EntityType
from tests.api.support import API_DB, assert_error
from tests.factories import make_order

pytestmark = API_DB


@pytest.fixture
def orders(order_type):
    return [make_order(reference=f"ORD-{n}", total=n * 100) for n in range(1, 4)]


@pytest.fixture
def ship_process(order_type):
    """Approve big orders, leave small ones for a human."""
    return process_save(slug="ship-order", name="Ship order", entity_type=order_type, definition={
        "steps": [
            {"id": "big", "type": "condition", "condition": "entity.data.total >= 200",
             "next": "mark", "config": {"else": "ask"}},
            {"id": "mark", "type": "function", "function": "transform",
             "config": {"params": {"output": {"reference": "entity.reference"}}}, "next": "after"},
            {"id": "after", "type": "condition", "condition": "result.reference != ''",
             "next": "done"},
            {"id": "done", "type": "function", "function": "noop"},
            {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}],
        "triggers": []})


def test_entity_types(api, order_type):
    listed = api.get("/api/entity-types").json()
    assert {t["key"] for t in listed["results"]} >= {"order", "case"}
    order = api.get("/api/entity-types/order").json()
    assert [s["key"] for s in order["statuses"]] == ["received", "approved", "shipped", "suspended"]
    assert {"source": "received", "target": "approved"} in order["transitions"]
    assert_error(api.get("/api/entity-types/nope"), 404)


def test_entity_list_filters_and_pagination(api, orders):
    everything = api.get("/api/entities?type=order").json()
    assert everything["count"] == 3
    page = api.get("/api/entities?type=order&limit=2&offset=2").json()
    assert len(page["results"]) == 1 and page["previous"] is not None
    assert api.get("/api/entities?search=ORD-2").json()["results"][0]["reference"] == "ORD-2"
    statuses = {e["status"] for e in everything["results"]}
    first = everything["results"][0]
    assert api.get(f"/api/entities?status={first['status']}").json()["count"] >= 1
    assert statuses <= {"received", "approved"}
    assert api.get("/api/entities?updatedSince=2999-01-01T00:00:00Z").json()["count"] == 0
    detail = api.get(f"/api/entities/{first['id']}").json()
    assert detail == first


def test_dry_run_previews_without_starting_a_run(api, orders, ship_process):
    big = next(o for o in orders if o.reference == "ORD-3")
    preview = api.post(f"/api/entities/{big.pk}/process", {"process": "ship-order", "dryRun": True},
                       format="json")
    assert preview.status_code == 200, preview.content
    body = preview.json()
    steps = {s["id"]: s for s in body["steps"]}
    assert steps["big"]["value"] is True and steps["big"]["wouldRun"] == "yes"
    assert steps["mark"]["wouldRun"] == "yes"
    assert steps["after"]["evaluation"] == "unknown"  # reads the result of a function
    assert steps["done"]["wouldRun"] == "maybe"
    assert body["skipped"] == ["ask"]
    assert body["applicable"] is True and body["unmetRequirements"] == big.unmet_requirements
    assert Run.objects.count() == 0

    small = next(o for o in orders if o.reference == "ORD-1")
    body = api.post(f"/api/entities/{small.pk}/process", {"process": "ship-order", "dryRun": True},
                    format="json").json()
    assert [s["id"] for s in body["steps"]] == ["big", "ask"]
    assert body["steps"][1]["approvers"] == ["manager@example.com"]


def test_processing_an_entity_starts_a_run(api, orders, ship_process):
    big = next(o for o in orders if o.reference == "ORD-3")
    response = api.post(f"/api/entities/{big.pk}/process", {"process": "ship-order"}, format="json")
    assert response.status_code == 202, response.content
    execution = api.get(f"/api/executions/{response.json()['executionId']}").json()
    assert execution["status"] == "completed" and execution["caseId"] == str(big.pk)


def test_processing_with_a_process_for_another_type_is_422(api, orders):
    process_save(slug="for-cases", name="For cases", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]},
        entity_type=EntityType.objects.get(key="case"))
    error = assert_error(api.post(f"/api/entities/{orders[0].pk}/process",
                                  {"process": "for-cases"}, format="json"), 422)
    assert "process" in error["fields"]
    error = assert_error(api.post(f"/api/entities/{orders[0].pk}/process",
                                  {"process": "nope"}, format="json"), 422)
    assert "process" in error["fields"]


def test_batches_progress_cancel_and_retry_failed(api, orders, ship_process):
    created = api.post("/api/batches", {"entityType": "order", "process": "ship-order",
                                        "filter": {"search": "ORD"}}, format="json")
    assert created.status_code == 201, created.content
    batch = created.json()
    assert batch["total"] == 3
    progress = api.get(f"/api/batches/{batch['id']}").json()
    assert progress["total"] == 3 and progress["done"] == 2 and progress["running"] == 1

    retried = api.post(f"/api/batches/{batch['id']}/retry-failed").json()
    assert retried["retried"] == 0
    cancelled = api.post(f"/api/batches/{batch['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled"] == 1
    # once finished, a batch cannot be cancelled again: 409, and it stays as it was
    again = assert_error(api.post(f"/api/batches/{batch['id']}/cancel"), 409, "conflict")
    assert "already finished" in again["message"]
    assert api.get(f"/api/batches/{batch['id']}").json()["status"] == "cancelled"


def test_batch_input_errors(api, orders, ship_process):
    error = assert_error(api.post("/api/batches", {"entityType": "nope", "process": "ship-order"},
                                  format="json"), 422)
    assert "entityType" in error["fields"]
    error = assert_error(api.post("/api/batches", {"entityType": "order", "process": "ship-order",
                                                   "filter": {"createdFrom": "soon"}},
                                  format="json"), 422)
    assert "filter.createdFrom" in error["fields"]
