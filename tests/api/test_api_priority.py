"""Priority through the API (docs/user-guide/priority.md): set on a workflow definition
and on a trigger, shown on executions and their steps, refused when it is not a level."""

from tests.api.support import API_DB, assert_error

pytestmark = API_DB

DEFINITION = {"id": "urgent", "name": "Urgent", "priority": "high",
              "steps": [{"id": "a", "type": "function", "function": "noop"}],
              "triggers": [{"type": "manual", "priority": "low"}]}


def test_priority_is_saved_shown_and_recorded_on_executions(api):
    created = api.post("/api/workflow-definitions", DEFINITION, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["priority"] == "high"
    assert created.json()["triggers"][0]["priority"] == "low"
    # PATCH without it keeps it
    patched = api.patch("/api/workflow-definitions/urgent", {"name": "Urgent!"}, format="json")
    assert patched.json()["priority"] == "high"
    started = api.post("/api/workflow-definitions/urgent/trigger", {}, format="json")
    execution = api.get(f"/api/executions/{started.json()['executionId']}?expand=steps").json()
    assert execution["priority"] == "low"  # the manual trigger's overrides the process's
    assert [step["priority"] for step in execution["steps"]] == ["low"]


def test_a_priority_that_is_not_a_level_is_refused(api):
    refused = assert_error(api.post("/api/workflow-definitions",
                                    {**DEFINITION, "priority": "urgent"}, format="json"), 422)
    assert "priority" in refused["fields"]
    refused = assert_error(api.post("/api/workflow-definitions", {
        **DEFINITION, "triggers": [{"type": "manual", "priority": "soon"}]}, format="json"), 422)
    assert refused["fields"] == {
        "triggers[0].priority": ["priority must be one of high, normal, low; got 'soon'."]}
