"""The entity writes, cancel, ?expand=steps,logs and the events' `skipped` answer,
each response checked against /api/schema/ (as test_api_schema_examples does for the
rest)."""

from automation.services.processes import process_save
from entities.demo import order_type_ensure
from tests.api.support import API_DB
from tests.api.test_api_schema_examples import call  # noqa: F401 - the fixture
from tests.factories import order_data

pytestmark = API_DB


def test_entity_writes_match_the_schema(call):  # noqa: F811
    order_type_ensure()
    created = call("POST", "/api/entities", 201,
                   body={"type": "order", "reference": "ORD-S", "data": order_data()})
    entity = {"id": created["id"]}
    call("POST", "/api/entities", 422, body={"type": "order", "reference": "ORD-S",
                                             "data": order_data()})
    call("PATCH", "/api/entities/{id}", 200, params=entity,
         body={"data": {"note": "x"}, "version": 1})
    call("PATCH", "/api/entities/{id}", 409, params=entity, body={"data": {}, "version": 1})
    call("PATCH", "/api/entities/{id}", 404, params={"id": "00000000-0000-0000-0000-000000000000"},
         body={"data": {}})
    call("POST", "/api/entities/{id}/transition", 409, params=entity, body={"to": "received"})
    call("POST", "/api/entities/{id}/transition", 200, params=entity, body={"to": "shipped"})
    where = {"type": "order", "reference": "ORD-T"}
    call("PUT", "/api/entity-types/{type}/entities/{reference}", 201, params=where,
         body={"data": order_data()})
    call("PUT", "/api/entity-types/{type}/entities/{reference}", 200, params=where,
         body={"data": order_data()})
    call("PUT", "/api/entity-types/{type}/entities/{reference}", 409, params=where,
         body={"data": order_data(), "status": "received"})


def test_cancel_expand_and_events_match_the_schema(call):  # noqa: F811
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}],
        "triggers": [{"type": "event", "config": {"eventType": "thing.happened"},
                      "condition": "event.data.go == true"}]})
    started = call("POST", "/api/workflow-definitions/{id}/trigger", 202, params={"id": "ask"},
                   body={"input": [1, 2]})
    run = {"id": started["executionId"]}
    call("GET", "/api/executions/{id}", 200, params=run, query={"expand": "steps,logs"})
    call("GET", "/api/executions/{id}", 400, params=run, query={"expand": "nothing"})
    call("POST", "/api/executions/{id}/cancel", 200, params=run)
    call("POST", "/api/executions/{id}/cancel", 409, params=run)
    answer = call("POST", "/api/events", 202, body={"type": "thing.happened", "data": {}})
    assert answer["skipped"][0]["process"] == "ask"
    call("POST", "/api/events", 422, body={"type": "thing.happened", "go": True})
