"""Run control over the API: retry (pinned or latest), re-run from a step with a preview,
and bulk re-run by query with pause and resume."""


from automation.functions import function
from automation.models import Batch, Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.api.support import API_DB

pytestmark = API_DB


@function("api-tests.boom")
def boom(ctx):
    raise RuntimeError("BOOM from the warehouse")


def failing_process(slug="flow", last="api-tests.boom"):
    return process_save(slug=slug, name="Flow", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop", "next": "b"},
        {"id": "b", "type": "function", "function": last}]})


def failed(process) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    return run


def test_retry_pinned_then_latest(api):
    process = failing_process()
    run = failed(process)
    pinned = api.post(f"/api/executions/{run.pk}/retry", {}, format="json")
    assert pinned.status_code == 201, pinned.content
    body = pinned.json()
    assert body["rerunOf"] == str(run.pk) and body["status"] == "failed" and body["version"] == 1
    assert api.get(f"/api/executions/{run.pk}").json()["reruns"] == [body["id"]]

    failing_process(last="noop")  # the fix, as version 2
    latest = api.post(f"/api/executions/{body['id']}/retry", {"version": "latest"}, format="json")
    assert latest.status_code == 201, latest.content
    assert latest.json()["version"] == 2 and latest.json()["status"] == "completed"


def test_retry_refusals_use_the_error_format(api):
    process = failing_process(last="noop")
    run, _ = run_start(process=process, trigger={"type": "manual"})
    answer = api.post(f"/api/executions/{run.pk}/retry", {}, format="json")
    assert answer.status_code == 409 and "Only a failed run" in answer.json()["error"]["message"]
    bad = api.post(f"/api/executions/{run.pk}/retry", {"version": "newest"}, format="json")
    assert bad.status_code == 422 and "version" in bad.json()["error"]["fields"]


def test_rerun_preview_then_start_with_edited_input(api):
    run = failed(failing_process())
    before = Run.objects.count()
    preview = api.post(f"/api/executions/{run.pk}/rerun",
                       {"fromStep": "b", "input": {"x": 2}, "preview": True}, format="json")
    assert preview.status_code == 200, preview.content
    assert preview.json()["steps"] == ["b"] and preview.json()["kept"] == ["a"]
    assert preview.json()["input"] == {"x": 2} and Run.objects.count() == before

    bad = api.post(f"/api/executions/{run.pk}/rerun", {"fromStep": "zz"}, format="json")
    assert bad.status_code == 422 and "fromStep" in bad.json()["error"]["fields"]
    assert Run.objects.count() == before

    started = api.post(f"/api/executions/{run.pk}/rerun", {"fromStep": "b", "input": {"x": 2}},
                       format="json")
    assert started.status_code == 201, started.content
    steps = api.get(f"/api/executions/{started.json()['id']}?expand=steps").json()["steps"]
    assert [(s["id"], s["input"]) for s in steps] == [("a", {"n": 1}), ("b", {"x": 2})]


def test_bulk_rerun_preview_start_pause_resume(api, settings):
    process = failing_process()
    runs = [failed(process) for _ in range(3)]
    preview = api.post("/api/executions/rerun", {
        "filter": {"process": "flow", "failedAt": "b", "errorContains": "BOOM"},
        "ratePerSecond": 5, "preview": True}, format="json")
    assert preview.status_code == 200, preview.content
    assert preview.json()["count"] == 3 and len(preview.json()["sample"]) == 3
    none = api.post("/api/executions/rerun", {"filter": {"process": "flow", "failedAt": "a"},
                                              "ratePerSecond": 5, "preview": True}, format="json")
    assert none.json()["count"] == 0

    failing_process(last="noop")
    started = api.post("/api/executions/rerun", {
        "filter": {"process": "flow"}, "version": "latest", "ratePerSecond": 50}, format="json")
    assert started.status_code == 201, started.content
    batch = Batch.objects.get(pk=started.json()["id"])
    assert batch.kind == "reruns" and batch.total == 3
    progress = api.get(f"/api/batches/{batch.pk}").json()
    assert (progress["done"], progress["failed"]) == (3, 0)
    assert sorted(str(r.rerun_of_id) for r in batch.runs.all()) == sorted(str(r.pk) for r in runs)
    # Finished: nothing to pause, nothing to resume.
    assert api.post(f"/api/batches/{batch.pk}/pause").status_code == 409
    assert api.post(f"/api/batches/{batch.pk}/resume").status_code == 409
    # The latest attempts completed: a second bulk re-run of the failed finds none.
    again = api.post("/api/executions/rerun", {"filter": {"process": "flow"}, "ratePerSecond": 5,
                                               "preview": True}, format="json")
    assert again.json()["count"] == 0


def test_a_start_while_paused_is_held_and_answered_409(api):
    from automation.models import HeldStart
    from automation.services import breaker

    process = failing_process(last="noop")
    breaker.pause(process=process, reason="too many starts")
    answer = api.post("/api/workflow-definitions/flow/trigger", {"input": {"n": 2}}, format="json")
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"]["code"] == "process_paused"
    held = HeldStart.objects.get()
    assert held.input == {"n": 2} and f"held start {held.pk}" in answer.json()["error"]["message"]
    assert not Run.objects.exists()


def test_an_entity_batch_takes_a_rate_limit(api, order_type):
    from tests.factories import make_order

    process_save(slug="note", name="Note", entity_type=order_type, definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    for n in range(3):
        make_order(reference=f"RATE-{n}")
    created = api.post("/api/batches", {"entityType": "order", "process": "note",
                                        "filter": {"search": "RATE-"}, "ratePerSecond": 100},
                       format="json")
    assert created.status_code == 201, created.content
    batch = Batch.objects.get(pk=created.json()["id"])
    assert batch.rate_per_second == 100 and batch.runs.count() == 3
    bad = api.post("/api/batches", {"entityType": "order", "process": "note", "ratePerSecond": 0},
                   format="json")
    assert bad.status_code == 422 and "ratePerSecond" in bad.json()["error"]["fields"]
