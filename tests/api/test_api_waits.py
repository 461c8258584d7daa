"""Durable waits over the REST API (docs/user-guide/waits.md): a definition with a time
zone and a waitForEvent step, a run started over the API that waits, and the event
published with POST /api/events that ends it; bad definitions are 422 with their path."""

from automation.models import Run
from automation.services import waits
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

PAID = {"id": "ship-when-paid", "name": "Ship when paid", "timezone": "Europe/Berlin",
        "steps": [
            {"id": "paid", "type": "waitForEvent", "next": "ship", "config": {
                "event": "payment.received", "condition": "event.data.order == input.order",
                "timeout": "P7D", "onTimeout": "chase"}},
            {"id": "ship", "type": "function", "function": "noop"},
            {"id": "chase", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]}


def test_a_run_waits_for_the_event_published_over_the_api(api):
    waits.forget_event_types()
    created = api.post("/api/workflow-definitions", PAID, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["timezone"] == "Europe/Berlin"
    assert api.get("/api/workflow-definitions/ship-when-paid").json()["timezone"] == "Europe/Berlin"
    started = api.post("/api/workflow-definitions/ship-when-paid/trigger",
                       {"input": {"order": "A-1"}}, format="json")
    assert started.status_code in (200, 201, 202), started.content
    run_id = started.json()["executionId"]
    body = api.get(f"/api/executions/{run_id}?expand=steps").json()
    assert body["status"] == "waiting"
    assert body["steps"][0]["waitingFor"]["event"] == "payment.received"

    published = api.post("/api/events", {"type": "payment.received", "data": {"order": "A-1"}},
                         format="json")
    assert published.status_code == 202, published.content
    body = api.get(f"/api/executions/{run_id}?expand=steps").json()
    assert body["status"] == "completed"
    paid = next(s for s in body["steps"] if s["id"] == "paid")
    assert paid["output"]["data"] == {"order": "A-1"} and paid["waitingFor"] is None
    assert [s["id"] for s in body["steps"]] == ["paid", "ship"]
    assert Run.objects.get(pk=run_id).status == Run.Status.COMPLETED


def test_bad_waits_are_refused_with_their_paths(api):
    bad = {**PAID, "timezone": "Nowhere/Land", "steps": [
        {**PAID["steps"][0], "config": {**PAID["steps"][0]["config"], "timeout": "a week",
                                        "onTimeout": "ghost", "condition": "event.data. =="}},
        *PAID["steps"][1:]]}
    error = assert_error(api.post("/api/workflow-definitions", bad, format="json"), 422)
    fields = error["fields"]
    assert "'a week' is not a duration" in fields["steps[0].config.timeout"][0]
    assert fields["steps[0].config.onTimeout"] == ["unknown step 'ghost'"]
    assert "steps[0].config.condition" in fields
    timezone_only = assert_error(api.post("/api/workflow-definitions",
                                          {**PAID, "timezone": "Nowhere/Land"}, format="json"), 422)
    assert "Unknown time zone 'Nowhere/Land'" in timezone_only["fields"]["timezone"][0]
