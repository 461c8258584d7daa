"""Synchronous replies: `?wait=` on the endpoints that start a run and a webhook's
`respond: "result"` (docs/rest-api.md, docs/user-guide/triggers.md). The run is executed
by a real worker process where the test is about waiting for one; the capacity test (many
waiting requests against a real server) is tests/reliability/test_sync_reply_capacity.py.
"""

import json
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client

from automation.models import ApiProcess, Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store import waiting
from entities.services import entity_create
from tests.api.support import API_DB, assert_error
from tests.worker import Worker, wait_for

pytestmark = API_DB

THREE_STEPS = [{"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
               # a second, so the run ends well after the request began to wait
               {"id": "b", "type": "function", "function": "worker.slow", "next": "c",
                "config": {"params": {"seconds": 1}}},
               {"id": "c", "type": "function", "function": "worker.effect"}]
TOKEN = "tok_abcdefghijklmnop"


@pytest.fixture(autouse=True)
def _listener_stopped():
    """The process's listener holds a connection to the test database: stop it with
    the test (the next wait starts a new one)."""
    yield
    waiting.stop_listener()


@pytest.fixture
def worker(effects, queued_mode, tmp_path, request, settings):
    """A real qcluster, warmed up: it has completed a run, so a test's wait measures the
    run, not the worker's start."""
    mode = getattr(request, "param", "auto")
    # only the notification (or, polling, the poll) can wake a waiting request in time:
    # the safety re-read comes after every wait in these tests is over
    settings.ENTITYFLOW_WAIT_RECHECK_SECONDS = 60
    env = {} if mode == "auto" else {"ENTITYFLOW_WAIT_NOTIFY": mode}
    process_save(slug="warm-up", name="Warm up", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    running = Worker(tmp_path / "worker.log", **env)
    try:
        run, _ = run_start(process=ApiProcess.objects.get(slug="warm-up"),
                           trigger={"type": "manual"})
        wait_for(lambda: Run.objects.filter(pk=run.pk, status=Run.Status.COMPLETED).exists(),
                 90, message="the worker to complete a first run")
        yield running
    finally:
        running.stop()


def _modes():
    """Each way a waiting request is woken: the default for this lane, polling, and
    Redis pub/sub where a Redis is configured (the PostgreSQL lane)."""
    modes = ["auto", "poll"]
    if django_settings.REDIS_URL:
        modes.append("redis")
    return modes


@pytest.mark.slow
def test_wait_on_a_three_step_run_returns_its_result(api, effects, worker):
    process_save(slug="three", name="Three", definition={"steps": THREE_STEPS})

    response = api.post("/api/workflow-definitions/three/trigger?wait=5", {"input": {"n": 1}},
                        format="json")

    assert response.status_code == 200, response.content
    run = Run.objects.get(process__slug="three")
    assert response.json() == {"executionId": str(run.pk), "status": "completed",
                               "result": {"step": "c"}, "error": None}
    assert run.trigger["wait"] == 5  # marked, so its end was announced
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "abc")


@pytest.mark.slow
@pytest.mark.parametrize("worker", _modes(), indirect=True)
def test_each_way_of_waking_answers_when_the_run_ends(api, effects, worker, settings, request):
    """The run ends after about a second; the request may wait 30. An answer well before
    the 30 s came from the run's end being announced (or, polling, seen), not from the
    wait running out (after which the answer would be 200 too: the run has ended)."""
    mode = request.node.callspec.params["worker"]
    if mode != "auto":
        settings.ENTITYFLOW_WAIT_NOTIFY = mode
    process_save(slug="three", name="Three", definition={"steps": THREE_STEPS})

    started = time.monotonic()
    response = api.post("/api/workflow-definitions/three/trigger?wait=30", {}, format="json")
    waited = time.monotonic() - started

    assert response.status_code == 200, response.content
    assert response.json()["result"] == {"step": "c"}
    assert waited < 20


@pytest.mark.slow
def test_a_run_that_waits_for_a_human_answers_202_within_the_wait(api, effects, worker):
    process_save(slug="ask", name="Ask", definition={"steps": [
        {"id": "a", "type": "function", "function": "worker.effect", "next": "ask"},
        {"id": "ask", "type": "human", "next": "done",
         "config": {"approvers": ["manager@example.com"], "requiredApprovals": 1}},
        {"id": "done", "type": "function", "function": "worker.effect"}]})

    started = time.monotonic()
    response = api.post("/api/workflow-definitions/ask/trigger?wait=25", {}, format="json")
    waited = time.monotonic() - started

    run = Run.objects.get(process__slug="ask")
    assert response.status_code == 202, response.content
    assert response.json() == {"executionId": str(run.pk)}
    assert run.status == Run.Status.WAITING
    # answered because the run waits for people, not because the 25 s ran out
    assert waited < 20
    assert effects.read_text().split() == [f"{run.pk}:a"]


@pytest.mark.slow
def test_a_failed_run_is_answered_with_its_error(api, effects, worker):
    process_save(slug="breaks", name="Breaks", definition={"steps": [
        {"id": "a", "type": "function", "function": "worker.effect", "next": "boom"},
        {"id": "boom", "type": "function", "function": "worker.fail",
         "config": {"retries": 0, "params": {"message": "no stock"}}}]})
    response = api.post("/api/workflow-definitions/breaks/trigger?wait=10", {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "failed" and body["result"] is None
    assert body["error"]["step"] == "boom"


def test_a_run_that_does_not_end_in_time_is_answered_202(api, queued_mode):
    """No worker: the run stays pending, the request gives up after its wait."""
    process_save(slug="echo", name="Echo", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    response = api.post("/api/workflow-definitions/echo/trigger?wait=1", {}, format="json")
    run = Run.objects.get(process__slug="echo")
    assert response.status_code == 202, response.content
    assert response.json() == {"executionId": str(run.pk)}
    assert run.status == Run.Status.PENDING  # no worker has taken its first step


def test_wait_on_an_entity_process_and_a_case_run(api, order_type, greeting_process):
    """Steps run synchronously in test settings: the run has ended when the wait begins."""
    process_save(slug="shape", name="Shape", entity_type=order_type, definition={"steps": [
        {"id": "t", "type": "function", "function": "transform",
         "config": {"params": {"output": {"ref": "entity.reference"}}}}]})
    order = entity_create(entity_type=order_type, reference="S-1",
                          data={"customer": {"name": "Ada"}, "total": 10})
    response = api.post(f"/api/entities/{order.pk}/process?wait=5", {"process": "shape"},
                        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == {"ref": "S-1"}

    case = api.post("/api/cases", {
        "firstName": "Ada", "lastName": "Lovelace", "personalNumber": "18151210-1234",
        "phone": "+44 20 7946 0000", "companyName": "Analytical Engines Ltd",
        "companyNumber": "AE-1843", "companyAddress": "London"}, format="json").json()
    params = api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                          "parameters": {"amount": 21}}, format="json").json()
    response = api.post("/api/workflows/run?wait=5", {
        "caseId": case["id"], "workflowDefinitionId": "greet-case", "parametersId": params["id"]},
        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["result"] == {"greeting": "Hello Ada", "amount": 42}
    # without ?wait the answer is today's
    plain = api.post("/api/workflows/run", {"caseId": case["id"],
                                            "workflowDefinitionId": "greet-case"}, format="json")
    assert plain.status_code == 202 and set(plain.json()) == {"id", "caseId", "status"}


def test_a_run_cancelled_while_a_request_waits_answers_200_cancelled(api, queued_mode):
    """No worker: the run would not end by itself; staff cancel it during the wait."""
    import threading

    from automation.services.runs import run_cancel

    process_save(slug="echo", name="Echo", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    answer = {}
    thread = threading.Thread(target=lambda: answer.setdefault("response", api.post(
        "/api/workflow-definitions/echo/trigger?wait=20", {}, format="json")))
    thread.start()
    run = wait_for(lambda: Run.objects.first(), 10, message="the run to start")
    run_cancel(run=run)
    thread.join(30)
    assert answer["response"].status_code == 200, answer["response"].content
    assert answer["response"].json()["status"] == "cancelled"
    assert answer["response"].json()["error"]["code"] == "cancelled"


@pytest.mark.parametrize("value", ["31", "-1", "abc", "2.5", "1e3"])
def test_wait_is_validated_and_nothing_starts(api, value):
    process_save(slug="echo", name="Echo", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    error = assert_error(api.post(f"/api/workflow-definitions/echo/trigger?wait={value}", {},
                                  format="json"), 400)
    assert "wait" in error["fields"]
    assert not Run.objects.exists()


# --- webhooks: config.respond "result" ----------------------------------------------

def _hook(**config):
    return {"type": "webhook", "config": {"path": "/webhooks/orders", "token": TOKEN, **config}}


def test_a_webhook_with_respond_result_answers_with_the_result(db):
    process_save(slug="hooked", name="Hooked", definition={
        "steps": [{"id": "t", "type": "function", "function": "transform",
                   "config": {"params": {"output": {"total": "input.total * 2"}}}}],
        "triggers": [_hook(respond="result", waitMs=5000)]})
    response = Client().post(f"/hooks/webhooks/orders?token={TOKEN}", json.dumps({"total": 4}),
                             content_type="application/json")
    run = Run.objects.get(process__slug="hooked")
    assert response.status_code == 200, response.content
    assert response.json() == {"executionId": str(run.pk), "status": "completed",
                               "result": {"total": 8}, "error": None}
    assert run.trigger["wait"] == 5


def test_a_webhook_whose_run_does_not_end_in_time_answers_202(db, queued_mode):
    process_save(slug="hooked", name="Hooked", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [_hook(respond="result", waitMs=300)]})
    response = Client().post(f"/hooks/webhooks/orders?token={TOKEN}", "{}",
                             content_type="application/json")
    run = Run.objects.get(process__slug="hooked")
    assert (response.status_code, response.json()) == (
        202, {"started": True, "executionId": str(run.pk)})


@pytest.mark.parametrize(("config", "field", "message"), [
    ({"respond": "result", "waitMs": 30001}, "waitMs", "from 1 to 30000"),
    ({"respond": "result", "waitMs": 0}, "waitMs", "from 1 to 30000"),
    ({"respond": "result", "waitMs": "5000"}, "waitMs", "whole number"),
    ({"waitMs": 5000}, "waitMs", 'only with respond: "result"'),
    ({"respond": "sync"}, "respond", '"accepted"'),
])
def test_respond_and_wait_ms_are_validated_at_save(api, config, field, message):
    response = api.post("/api/workflow-definitions", {
        "name": "Hooked", "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [_hook(**config)]}, format="json")
    error = assert_error(response, 422)
    (key, messages), = ((k, v) for k, v in error["fields"].items() if k.endswith(field))
    assert message in messages[0], (key, messages)
    assert not ApiProcess.objects.exists()


@pytest.mark.parametrize(("path", "accepted"), [
    ("/api/workflow-definitions/{id}/trigger", "ExecutionId"),
    ("/api/workflows/run", "Workflow"),
    ("/api/entities/{id}/process", "ExecutionId"),
])
def test_the_schema_documents_both_answers_and_wait(anon, path, accepted):
    schema = anon.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"][path]["post"]
    (wait,) = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert (wait["in"], wait["schema"]["maximum"]) == ("query", 30)
    responses = operation["responses"]
    assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        f"/{accepted}")
    components = schema["components"]["schemas"]
    ok = responses["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    # the entity endpoint's 200 is also its dry run's: one of the two
    assert "#/components/schemas/ExecutionResult" in json.dumps(
        {"$ref": f"#/components/schemas/{ok}", **components[ok]})
    result = components["ExecutionResult"]
    assert set(result["properties"]) == {"executionId", "status", "result", "error"}
