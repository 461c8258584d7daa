"""Expressions are checked when they are saved (docs/user-guide/expressions.md): a call to
a function CEL does not provide, or a name the expression can never see there, is a 422
naming the field and the function or name; string fields take strings only."""

from automation.models import ApiProcess, Function
from entities.models import Entity
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

ESCAPE = "__import__('os').system('id')"


def definition(**overrides):
    body = {"id": "checked", "name": "Checked", "steps": [
        {"id": "a", "type": "function", "function": "noop", "next": "b"},
        {"id": "b", "type": "condition", "condition": "result.ok == true", "next": "c"},
        {"id": "c", "type": "function", "function": "noop"}],
        "triggers": [{"type": "event", "config": {"eventType": "x.y"},
                      "condition": "event.data.total > 0"}]}
    body.update(overrides)
    return body


def test_a_condition_calling_an_unknown_function_is_refused(api):
    body = definition()
    body["steps"][1]["condition"] = ESCAPE
    error = assert_error(api.post("/api/workflow-definitions", body, format="json"), 422)
    message = " ".join(error["fields"]["steps[1].condition"])
    assert "__import__" in message and "unknown function" in message
    assert not ApiProcess.objects.filter(slug="checked").exists()


def test_a_trigger_condition_calling_an_unknown_function_or_reading_result_is_refused(api):
    body = definition()
    body["triggers"][0]["condition"] = "event.data.total.toFixed(2) == '1.00'"
    error = assert_error(api.post("/api/workflow-definitions", body, format="json"), 422)
    assert "'toFixed'" in " ".join(error["fields"]["triggers[0].condition"])
    body["triggers"][0]["condition"] = "result.approved"  # no step has run yet
    error = assert_error(api.post("/api/workflow-definitions", body, format="json"), 422)
    message = " ".join(error["fields"]["triggers[0].condition"])
    assert "unknown variable 'result'" in message and "trigger condition" in message


def test_a_step_naming_a_variable_it_can_never_see_is_refused(api):
    body = definition()
    body["steps"][1]["condition"] = "resutl.ok == true"
    error = assert_error(api.post("/api/workflow-definitions", body, format="json"), 422)
    assert "unknown variable 'resutl'" in " ".join(error["fields"]["steps[1].condition"])


def test_what_cel_provides_is_accepted(api):
    body = definition()
    body["steps"][1]["condition"] = ("size(result) > 0 && string(input.x).startsWith('a') "
                                     "&& [1, 2].exists(n, n > 1) && has(entity.data)")
    response = api.post("/api/workflow-definitions", body, format="json")
    assert response.status_code == 201, response.content


def test_a_transform_output_calling_an_unknown_function_is_refused(api):
    error = assert_error(api.post("/api/functions", {
        "name": "shout", "action": "transform",
        "config": {"output": {"loud": "input.name.upper()", "ok": "input.name"}}},
        format="json"), 422)
    assert "'upper'" in " ".join(error["fields"]["config.output.loud"])
    assert "config.output.ok" not in error["fields"]
    assert not Function.objects.filter(name="shout").exists()
    error = assert_error(api.post("/api/functions", {
        "name": "shout", "action": "transform", "config": {"output": {"x": "response.body"}}},
        format="json"), 422)
    assert "unknown variable 'response'" in " ".join(error["fields"]["config.output.x"])


def test_an_inline_transform_in_a_step_is_checked_too(api):
    body = definition()
    body["steps"][0] = {"id": "a", "type": "function", "function": "transform", "next": "b",
                        "config": {"params": {"output": {"x": ESCAPE}}}}
    error = assert_error(api.post("/api/workflow-definitions", body, format="json"), 422)
    assert any("__import__" in " ".join(v) for v in error["fields"].values()), error


def test_string_fields_take_strings_only(api):
    error = assert_error(api.post("/api/cases", {"firstName": 12, "lastName": "Lovelace"},
                                  format="json"), 422)
    assert error["fields"] == {"firstName": ["Expected a string, got a number."]}
    error = assert_error(api.post("/api/cases", {"firstName": True}, format="json"), 422)
    assert error["fields"] == {"firstName": ["Expected a string, got a boolean."]}
    assert not Entity.objects.filter(entity_type__key="case").exists()
    error = assert_error(api.post("/api/workflow-definitions", definition(name=5),
                                  format="json"), 422)
    assert "name" in error["fields"]
    error = assert_error(api.post("/api/batches", {"entityType": "case", "process": "x",
                                                   "filter": {"search": 3}}, format="json"), 422)
    assert "filter.search" in error["fields"]
