"""A function step may carry its function inline ({name, action, config}); it is stored
with the definition version, runs as written, and round-trips through the API and the
admin editor (docs/user-guide/processes.md#inline-functions)."""

import json

from django.urls import reverse

from automation.models import ApiProcess, Function, Run
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

SHOUT = {"name": "shout", "action": "transform",
         "config": {"output": {"loud": "input.name + '!'", "n": "size(input.name)"}}}


def inline_definition(function=SHOUT):
    return {"id": "inline", "name": "Inline", "steps": [
        {"id": "a", "type": "function", "function": function, "next": "b"},
        {"id": "b", "type": "function", "function": "noop"}], "triggers": []}


def test_an_inline_function_round_trips_and_runs(api):
    created = api.post("/api/workflow-definitions", inline_definition(), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["steps"][0]["function"] == SHOUT
    assert api.get("/api/workflow-definitions/inline").json()["steps"][0]["function"] == SHOUT
    assert not Function.objects.exists()  # nothing but the definition holds it

    started = api.post("/api/workflow-definitions/inline/trigger", {"input": {"name": "ada"}},
                       format="json").json()
    run = api.get(f"/api/executions/{started['executionId']}").json()
    assert run["status"] == "completed", run
    assert Run.objects.get(pk=started["executionId"]).result == {"loud": "ada!", "n": 3}


def test_each_version_keeps_its_own_inline_function(api):
    api.post("/api/workflow-definitions", inline_definition(), format="json")
    changed = {**SHOUT, "config": {"output": {"loud": "input.name + '?'"}}}
    body = inline_definition(changed)
    assert api.put("/api/workflow-definitions/inline", body, format="json").status_code == 200
    process = ApiProcess.objects.get(slug="inline")
    versions = {v.number: v.definition["steps"][0]["function"] for v in process.versions.all()}
    assert versions == {1: SHOUT, 2: changed}


def test_a_bad_inline_function_is_a_422_naming_it(api):
    bad = {"name": "x", "action": "no.such.action", "config": {}}
    error = assert_error(api.post("/api/workflow-definitions", inline_definition(bad),
                                  format="json"), 422)
    assert "steps[0].function.action" in error["fields"], error
    bad = {"name": "x", "action": "transform", "config": {}}  # transform needs output
    error = assert_error(api.post("/api/workflow-definitions", inline_definition(bad),
                                  format="json"), 422)
    assert "steps[0].function.config.output" in error["fields"], error
    bad = {"name": "x", "action": "transform", "config": {"output": {"x": "foo(1)"}},
           "connection": "c"}
    error = assert_error(api.post("/api/workflow-definitions", inline_definition(bad),
                                  format="json"), 422)
    assert "steps[0].function.connection" in error["fields"], error
    assert "'foo'" in " ".join(error["fields"]["steps[0].function.config.output.x"])
    assert not ApiProcess.objects.filter(slug="inline").exists()


def test_the_admin_editor_round_trips_an_inline_function(admin_client):
    definition = {"steps": inline_definition()["steps"], "triggers": [{"type": "manual"}]}
    response = admin_client.post(reverse("admin:automation_apiprocess_add"), {
        "name": "Inline", "slug": "inline", "description": "", "entity_type": "",
        "enabled": "on", "definition": json.dumps(definition), "parameters_schema_text": ""})
    assert response.status_code == 302, response.content.decode()[:3000]
    process = ApiProcess.objects.get(slug="inline")
    assert process.definition["steps"][0]["function"] == SHOUT
    page = admin_client.get(reverse("admin:automation_apiprocess_change",
                                    args=[process.pk])).content.decode()
    assert "shout (inline transform)" in page
    assert "&quot;action&quot;: &quot;transform&quot;" in page  # the JSON in the editor
