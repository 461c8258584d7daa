"""List filters that an external system relies on: each one must include what matches and
leave out what does not (a filter that is ignored fails these tests), and retry-failed
re-runs exactly the failed entities of a batch."""

import time

import pytest
from django.utils import timezone

from automation.exceptions import StepFailedError
from automation.functions import function
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.models import EntityType
from entities.services import entity_create, entity_update
from tests.api.support import API_DB
from tests.factories import make_order, order_data

pytestmark = API_DB


@function("api-tests.needs-stock")
def needs_stock(ctx):
    """Fails for an order without `stock` in its data (a test "fixes" that later)."""
    if not (ctx.entity and ctx.entity.data.get("stock")):
        raise StepFailedError("No stock for this order", code="no_stock", retryable=False)
    return {"reserved": ctx.entity.reference}


def references(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["reference"] for row in response.json()["results"]}


@pytest.fixture
def mixed(order_type):
    """Two approved orders, one order held in `received`, and a case."""
    held = make_order(reference="ORD-HELD", data={**order_data(), "customer": {"name": "No Mail"}})
    approved = [make_order(reference=f"ORD-OK{n}") for n in (1, 2)]
    case = entity_create(entity_type=EntityType.objects.get(key="case"), reference="CASE-1",
                         data={"firstName": "Ada", "lastName": "Lovelace"})
    assert held.status == "received" and {o.status for o in approved} == {"approved"}
    return {"held": held, "approved": approved, "case": case}


def test_entity_filters_include_matches_and_leave_out_the_rest(api, mixed):
    assert references(api.get("/api/entities?type=order")) == {"ORD-HELD", "ORD-OK1", "ORD-OK2"}
    assert references(api.get("/api/entities?type=case")) == {"CASE-1"}
    assert references(api.get("/api/entities?status=received")) == {"ORD-HELD"}
    assert references(api.get("/api/entities?type=order&status=approved")) == {"ORD-OK1",
                                                                                "ORD-OK2"}
    assert references(api.get("/api/entities?search=OK2")) == {"ORD-OK2"}

    time.sleep(0.01)  # updatedSince compares timestamps: step past the creations
    since = timezone.now()
    entity_update(entity=mixed["approved"][0], data={**order_data(), "note": "changed"})
    assert references(api.get("/api/entities", {"updatedSince": since.isoformat()})) == {
        "ORD-OK1"}


def test_run_filters_by_process_status_entity_and_date(api, mixed, order_type):
    definition = {"steps": [{"id": "go", "type": "function", "function": "api-tests.needs-stock"}]}
    reserve = process_save(slug="reserve", name="Reserve", entity_type=order_type,
                           definition=definition)
    other = process_save(slug="other", name="Other", entity_type=order_type, definition={
        "steps": [{"id": "go", "type": "function", "function": "noop"}]})
    ok1, ok2 = mixed["approved"]
    entity_update(entity=ok1, data={**ok1.data, "stock": 3})
    started = {}
    for process, entity in ((reserve, ok1), (reserve, ok2), (other, ok2)):
        run, _ = run_start(process=process, trigger={"type": "manual"}, entity=entity)
        started[(process.slug, entity.reference)] = str(run.pk)

    def ids(query: dict) -> set[str]:
        response = api.get("/api/runs", query)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids({"process": "reserve"}) == {started["reserve", "ORD-OK1"],
                                           started["reserve", "ORD-OK2"]}
    assert ids({"status": "failed"}) == {started["reserve", "ORD-OK2"]}
    assert ids({"entity": str(ok2.pk)}) == {started["reserve", "ORD-OK2"],
                                            started["other", "ORD-OK2"]}
    assert ids({"process": "reserve", "status": "completed"}) == {started["reserve", "ORD-OK1"]}
    assert ids({"createdFrom": timezone.now().isoformat()}) == set()
    assert len(ids({"createdTo": timezone.now().isoformat()})) == 3


def test_retry_failed_reruns_only_the_failed_entities(api, order_type):
    orders = [make_order(reference=f"ORD-B{n}", data={**order_data(), **(
        {"stock": 1} if n % 2 else {})}) for n in range(1, 7)]
    process_save(slug="reserve-all", name="Reserve all", entity_type=order_type, definition={
        "steps": [{"id": "go", "type": "function", "function": "api-tests.needs-stock"}]})
    created = api.post("/api/batches", {"entityType": "order", "process": "reserve-all",
                                        "filter": {"search": "ORD-B"}}, format="json")
    assert created.status_code == 201, created.content
    batch_id = created.json()["id"]
    progress = api.get(f"/api/batches/{batch_id}").json()
    assert (progress["total"], progress["done"], progress["failed"]) == (6, 3, 3)

    failed = [o for o in orders if not o.data.get("stock")]
    for order in failed:  # the fix: stock arrives
        order.refresh_from_db()
        entity_update(entity=order, data={**order.data, "stock": 5})
    retried = api.post(f"/api/batches/{batch_id}/retry-failed")
    assert retried.status_code == 200, retried.content
    assert retried.json()["retried"] == 3

    progress = api.get(f"/api/batches/{batch_id}").json()
    assert (progress["done"], progress["failed"]) == (6, 0)
    every = api.get("/api/runs", {"batch": batch_id, "limit": 50}).json()["results"]
    # Each failed run went again from its failed step as a new attempt linked to it:
    # the latest attempts are one run per entity, all done.
    runs = [run for run in every if not run["reruns"]]
    retries = {run["rerunOf"] for run in runs if run["rerunOf"]}
    assert retries == {run["id"] for run in every if run["reruns"]} and len(retries) == 3
    assert sorted(run["caseId"] for run in runs) == sorted(str(o.pk) for o in orders)
    assert {run["status"] for run in runs} == {"completed"}
    for order in failed:
        run_id = next(run["id"] for run in runs if run["caseId"] == str(order.pk))
        steps = api.get(f"/api/executions/{run_id}?expand=steps").json()["steps"]
        assert [(s["id"], s["status"], s["attempts"]) for s in steps] == [("go", "completed", 1)]
    for order in orders:
        if order not in failed:
            run_id = next(run["id"] for run in runs if run["caseId"] == str(order.pk))
            steps = api.get(f"/api/executions/{run_id}?expand=steps").json()["steps"]
            assert [(s["status"], s["attempts"]) for s in steps] == [("completed", 1)]  # not re-run
