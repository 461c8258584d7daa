from automation.models import Connection, Function
from automation.services.processes import process_save
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

TOTAL = {"name": "calculate-purchase-total", "action": "transform",
         "config": {"output": {"total": "input.quantity * input.price"}}}


def test_create_get_list_replace_delete(api):
    created = api.post("/api/functions", TOTAL, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    shown = {k: body[k] for k in ("name", "action", "config", "connection")}
    assert shown == {**TOTAL, "connection": None}
    assert api.get("/api/functions/calculate-purchase-total").json() == body
    assert api.get("/api/functions?action=transform").json()["count"] == 1
    assert api.get("/api/functions?action=noop").json()["count"] == 0

    replaced = api.put("/api/functions/calculate-purchase-total",
                       {"action": "transform", "config": {"output": {"total": "input.total"}}},
                       format="json")
    assert replaced.status_code == 200, replaced.content
    assert Function.objects.get().config == {"output": {"total": "input.total"}}

    assert api.delete("/api/functions/calculate-purchase-total").status_code == 204
    assert_error(api.get("/api/functions/calculate-purchase-total"), 404)


def test_unknown_action_is_422_naming_action(api):
    error = assert_error(api.post("/api/functions", {**TOTAL, "action": "teleport"}, format="json"),
                         422)
    assert "action" in error["fields"]


def test_config_that_does_not_fit_the_action_is_422_naming_the_field(api):
    error = assert_error(api.post("/api/functions", {**TOTAL, "config": {"output": "nope"}},
                                  format="json"), 422)
    assert "config.output" in error["fields"]
    error = assert_error(api.post("/api/functions", {**TOTAL, "config": {}}, format="json"), 422)
    assert "config.output" in error["fields"]
    assert not Function.objects.exists()


def test_connection_is_named_and_an_unknown_one_is_422(api):
    error = assert_error(api.post("/api/functions", {**TOTAL, "connection": "nope"}, format="json"),
                         422)
    assert "connection" in error["fields"]
    Connection.objects.create(provider="dropbox", name="files")
    ok = api.post("/api/functions", {**TOTAL, "connection": "files"}, format="json")
    assert ok.status_code == 201 and ok.json()["connection"] == "files"


def test_renaming_through_put_is_refused(api):
    api.post("/api/functions", TOTAL, format="json")
    error = assert_error(api.put("/api/functions/calculate-purchase-total",
                                 {**TOTAL, "name": "other"}, format="json"), 422)
    assert "name" in error["fields"]


def test_a_function_an_enabled_process_calls_cannot_be_deleted(api):
    api.post("/api/functions", TOTAL, format="json")
    process_save(slug="uses-it", name="Uses it", definition={"steps": [
        {"id": "a", "type": "function", "function": "calculate-purchase-total"}]})
    error = assert_error(api.delete("/api/functions/calculate-purchase-total"), 409)
    assert "uses-it" in error["message"]
