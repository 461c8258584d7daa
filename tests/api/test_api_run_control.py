"""Run control over the API: cancel, ?expand=steps,logs, the statuses a run goes
through (pending before a worker takes it), and what a trigger body may hold."""

import pytest

from automation.models import ApprovalRequest, Run, StepRun
from automation.services.processes import process_save
from tests.api.support import API_DB, assert_error
from tests.worker import Worker, wait_for

pytestmark = API_DB


@pytest.fixture
def waiting_process():
    """Stops at a human step: the run waits until someone decides."""
    return process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "note", "type": "function", "function": "transform",
         "config": {"params": {"output": {"asked": "true"}}}, "next": "ask"},
        {"id": "ask", "type": "human", "config": {"approvers": ["manager@example.com"]}}],
        "triggers": []})


def trigger(api, slug, body=None):
    response = api.post(f"/api/workflow-definitions/{slug}/trigger", body or {}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["executionId"]


def test_cancel_over_the_api(api, waiting_process):
    run_id = trigger(api, "ask")
    assert api.get(f"/api/executions/{run_id}").json()["status"] == "waiting"

    cancelled = api.post(f"/api/executions/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.content
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["finishedAt"]
    assert body["error"]["code"] == "cancelled"
    assert StepRun.objects.get(run_id=run_id, step_id="ask").status == "cancelled"
    assert ApprovalRequest.objects.get(run_id=run_id).status == "cancelled"

    again = assert_error(api.post(f"/api/executions/{run_id}/cancel"), 409, "conflict")
    assert "cancelled" in again["message"]
    assert_error(api.post("/api/executions/00000000-0000-0000-0000-000000000000/cancel"), 404)


def test_expand_steps_and_logs(api, waiting_process):
    run_id = trigger(api, "ask")
    plain = api.get(f"/api/executions/{run_id}").json()
    assert "steps" not in plain
    steps = api.get(f"/api/executions/{run_id}?expand=steps").json()["steps"]
    assert [s["id"] for s in steps] == ["note", "ask"] and "logs" not in steps[0]
    with_logs = api.get(f"/api/executions/{run_id}?expand=steps,logs").json()["steps"]
    assert all(isinstance(s["logs"], list) for s in with_logs)
    assert any(line.get("message") for s in with_logs for line in s["logs"])
    assert api.get(f"/api/executions/{run_id}?expand=logs").json()["steps"][0]["logs"] is not None
    error = assert_error(api.get(f"/api/executions/{run_id}?expand=steps,everything"), 400)
    assert "expand" in error["fields"]


def test_input_may_be_any_json_and_unknown_keys_are_named(api):
    process_save(slug="echo", name="Echo", definition={"steps": [
        {"id": "echo", "type": "function", "function": "transform",
         "config": {"params": {"output": {"got": "input"}}}}], "triggers": []})
    for value, seen in (([1, 2], [1, 2]), ("text", "text"), (7, 7), (False, False),
                        (None, {})):
        run_id = trigger(api, "echo", {"input": value})
        run = Run.objects.get(pk=run_id)
        assert run.status == "completed" and run.result == {"got": seen}, (value, run.error)

    error = assert_error(api.post("/api/workflow-definitions/echo/trigger",
                                  {"total": 5, "customer": "x"}, format="json"), 422)
    assert set(error["fields"]) == {"total", "customer"}
    assert "input" in error["fields"]["total"][0]
    assert Run.objects.count() == 5


def test_a_process_for_entities_needs_one(api, order_type):
    process_save(slug="per-order", name="Per order", entity_type=order_type, definition={
        "steps": [{"id": "done", "type": "function", "function": "noop"}], "triggers": []})
    error = assert_error(api.post("/api/workflow-definitions/per-order/trigger", {},
                                  format="json"), 422)
    assert "/api/entities/{id}/process" in error["fields"]["entity"][0]
    assert not Run.objects.exists()


@pytest.mark.slow
def test_a_run_is_pending_until_a_worker_takes_it(api, settings, tmp_path):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    process_save(slug="quick", name="Quick", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop", "next": "b"},
        {"id": "b", "type": "function", "function": "noop"}], "triggers": []})
    run_id = trigger(api, "quick")
    before = api.get(f"/api/executions/{run_id}").json()
    assert (before["status"], before["startedAt"]) == ("pending", None)
    assert api.get("/api/runs?status=pending").json()["count"] == 1

    worker = Worker(tmp_path / "worker.log")
    try:
        wait_for(lambda: Run.objects.filter(pk=run_id, status="completed").exists(), 60,
                 message="the run to complete")
    finally:
        worker.stop()
    after = api.get(f"/api/executions/{run_id}").json()
    assert after["startedAt"] and after["startedAt"] >= before["createdAt"]
