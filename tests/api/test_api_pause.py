"""Pause and resume through the API (docs/user-guide/operating-runs.md#pause-and-resume):
scoped `run`, shown on the workflow definition, held starts released on resume."""

from automation.models import HeldStart, Run
from tests.api.support import API_DB, assert_error, bearer_client

pytestmark = API_DB

DEFINITION = {"id": "ship", "name": "Ship",
              "steps": [{"id": "a", "type": "function", "function": "noop"}]}


def test_pause_holds_starts_resume_releases_them(api):
    assert api.post("/api/workflow-definitions", DEFINITION, format="json").status_code == 201
    paused = api.post("/api/workflow-definitions/ship/pause", {"reason": "maintenance"},
                      format="json")
    assert paused.status_code == 200, paused.content
    assert paused.json()["paused"] is True and paused.json()["reason"] == "maintenance"
    assert api.get("/api/workflow-definitions/ship").json()["paused"] is True
    held = assert_error(api.post("/api/workflow-definitions/ship/trigger", {}, format="json"),
                        409, "process_paused")
    assert "held start" in held["message"] and not Run.objects.exists()
    resumed = api.post("/api/workflow-definitions/ship/resume", {}, format="json")
    assert resumed.json() == {"released": 1, "discarded": 0, "continued": 0}
    assert HeldStart.objects.get().status == "released" and Run.objects.count() == 1
    assert api.get("/api/workflow-definitions/ship").json()["paused"] is False
    assert_error(api.post("/api/workflow-definitions/ship/resume", {}, format="json"), 409)
    assert_error(api.post("/api/workflow-definitions/nope/pause", {}, format="json"), 404)
    assert_error(api.post("/api/workflow-definitions/ship/resume", {"held": "keep"},
                          format="json"), 422)


def test_pause_all_and_resume_all(api):
    for slug in ("one", "two"):
        api.post("/api/workflow-definitions", {**DEFINITION, "id": slug}, format="json")
    assert api.post("/api/pause-all", {}, format="json").json() == {"paused": 2}
    listed = api.get("/api/workflow-definitions").json()["results"]
    assert [d["paused"] for d in listed] == [True, True]
    assert api.post("/api/resume-all", {"held": "discard"}, format="json").json() == {
        "resumed": 2, "released": 0, "discarded": 0, "continued": 0}


def test_pausing_needs_the_run_scope():
    from automation.services.api_auth import api_client_create

    reader = bearer_client(api_client_create(name="Reader", scopes=["read"])[0])
    assert_error(reader.post("/api/pause-all", {}, format="json"), 403)
