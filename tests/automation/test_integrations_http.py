"""`http.request` and `webhook.post` steps: templated requests to a loopback echo
server, credentials kept out of run history, and internal addresses refused."""

import json

import pytest

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_create
from integrations.signing import verify
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)

API_TOKEN = "http-api-token-4f1b2c3d4e5f"
STEP_SECRET = "whsec-step-secret-123456789"
ORDER = {"customer": {"name": "Ada"}, "total": 12.5, "items": 2}


@pytest.fixture
def echo():
    server = EchoServer().start()
    yield server
    server.stop()


def one_step(function, *, retries=0, **params):
    config = {"params": params, **({"retries": retries} if retries else {})}
    return process_save(slug=f"p-{function.replace('.', '-')}", name="One step",
                        definition={"steps": [{"id": "call", "type": "function",
                                               "function": function, "config": config}]})


def run_of(process, **kwargs) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, **kwargs)
    run.refresh_from_db()
    return run


def test_templated_request_with_connection_credentials_kept_out_of_history(order_type, echo):
    connection = connection_create(provider="http", name="warehouse", base_url=echo.url,
                                   credentials={"token": API_TOKEN})
    function_save(name="notify-warehouse", action="http.request", connection=connection,
                  config={"method": "POST", "url": "/orders/{{ entity.reference }}",
                          "headers": {"X-Order": "{{ entity.reference }}"},
                          "json": {"total": "{{ entity.data.total }}",
                                   "label": "{{ entity.data.items }} items"}})
    process = process_save(slug="warehouse", name="Warehouse", definition={"steps": [
        {"id": "call", "type": "function", "function": "notify-warehouse"}]})
    order = entity_create(entity_type=order_type, reference="ORD-20", data=ORDER)

    run = run_of(process, entity=order)

    assert run.status == Run.Status.COMPLETED, run.error
    [call] = echo.calls
    assert call.path == "/orders/ORD-20" and call.headers["X-Order"] == "ORD-20"
    assert call.headers["Authorization"] == f"Bearer {API_TOKEN}"
    assert call.json() == {"total": 12.5, "label": "2 items"}  # a lone placeholder keeps its type
    echoed = run.result["body"]["headers"]
    assert echoed["Authorization"] == "Bearer [redacted]"  # the server echoed our token
    assert API_TOKEN not in json.dumps(list(StepRun.objects.values("output", "logs")))


def test_http_request_without_a_named_connection_sends_no_credentials(echo):
    connection_create(provider="http", name="only-one", credentials={"token": API_TOKEN})
    process = one_step("http.request", url=f"{echo.url}/anything")

    run = run_of(process)

    assert run.status == Run.Status.COMPLETED, run.error
    assert "Authorization" not in echo.calls[0].headers


def test_error_status_fails_the_step_and_5xx_is_retried(echo):
    process = one_step("http.request", url=f"{echo.url}/status/503", retries=1)

    run = run_of(process)

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "connector_unavailable" and "503" in run.error["message"]
    assert StepRun.objects.get(run=run).attempt == 2 and len(echo.calls) == 2


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/latest", "http://[::1]:9/", "http://10.0.0.1/admin",
    "http://169.254.169.254/latest/meta-data/",
])
def test_internal_addresses_are_refused(url, settings):
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = []
    process = one_step("http.request", url=url, retries=2)

    run = run_of(process)

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "outbound_blocked"
    assert "refused" in run.error["message"] and "ENTITYFLOW_OUTBOUND_ALLOWLIST" in \
        run.error["message"]
    assert StepRun.objects.get(run=run).attempt == 1  # not worth a retry


def test_webhook_post_step_signs_the_payload(order_type, echo):
    process = one_step("webhook.post", url=f"{echo.url}/hook", secret=STEP_SECRET,
                       event="order.exported", payload={"order": "{{ entity.reference }}",
                                                        "data": "{{ entity.data }}"})
    order = entity_create(entity_type=order_type, reference="ORD-21", data=ORDER)

    run = run_of(process, entity=order)

    assert run.status == Run.Status.COMPLETED, run.error
    [call] = echo.calls
    assert call.json() == {"order": "ORD-21", "data": ORDER}
    verify(STEP_SECRET, call.body, call.headers["X-Entityflow-Signature"])
    assert call.headers["X-Entityflow-Event"] == "order.exported"
    assert run.result["deliveryId"] == call.headers["X-Entityflow-Delivery"]
    assert STEP_SECRET not in json.dumps(list(StepRun.objects.values("output", "logs",
                                                                     "error")))


def test_a_broken_template_fails_the_step_clearly(echo):
    process = one_step("http.request", url=f"{echo.url}/" + "{{ entity.reference }}")

    run = run_of(process)  # no entity in scope

    assert run.status == Run.Status.FAILED
    assert "entity" in run.error["message"] and not echo.calls


# -- response mapping ------------------------------------------------------------------

def test_response_mapping_builds_the_step_output(order_type, echo):
    function_save(name="register-order", action="http.request", config={
        "method": "POST", "url": f"{echo.url}/orders", "json": {"ref": "{{ entity.reference }}"},
        "response": {"status": "response.status", "path": "response.body.path",
                     "sent": "response.body.body", "requestId": "response.headers['x-request-id']",
                     "ok": "response.status === 200 && entity.data.total > 10.0"}})
    process = process_save(slug="register", name="Register", definition={"steps": [
        {"id": "call", "type": "function", "function": "register-order", "next": "use"},
        {"id": "use", "type": "function", "function": "transform",
         "config": {"params": {"output": {"id": "result.requestId"}}}}]})
    order = entity_create(entity_type=order_type, reference="ORD-30", data=ORDER)

    run = run_of(process, entity=order)

    assert run.status == Run.Status.COMPLETED, run.error
    call = StepRun.objects.get(run=run, step_id="call")
    assert call.output == {"status": 200, "path": "/orders", "sent": '{"ref": "ORD-30"}',
                           "requestId": "req-1", "ok": True}
    assert run.result == {"id": "req-1"}  # the next step reads the mapped output
    assert {"message": "response mapped to ok, path, requestId, sent, status"} in call.logs


def test_a_bad_mapping_expression_is_refused_when_the_function_is_saved(admin_client):
    from automation.exceptions import FunctionConfigInvalidError
    from automation.models import Function

    with pytest.raises(FunctionConfigInvalidError) as caught:
        function_save(name="broken", action="http.request", config={
            "url": "https://api.example.com/x",
            "response": {"id": "response.body.(", "ok": "true"}})

    assert list(caught.value.fields) == ["config.response.id"]
    assert caught.value.message.startswith("config.response.id: ")
    with pytest.raises(FunctionConfigInvalidError) as not_text:
        function_save(name="broken", action="http.request",
                      config={"url": "https://api.example.com/x", "response": {"id": 5}})
    assert "config.response.id" in not_text.value.fields

    page = admin_client.post("/admin/automation/function/add/", {
        "name": "broken", "action": "http.request", "description": "",
        "config": json.dumps({"url": "https://api.example.com/x",
                              "response": {"id": "response.body.("}})})
    assert page.status_code == 200
    [error] = page.context["adminform"].form.errors["config"]
    assert error.startswith("config.response.id: ")
    assert not Function.objects.exists()


def test_a_mapping_that_fails_on_the_response_fails_the_step_by_name(echo):
    process = one_step("http.request", url=f"{echo.url}/anything", retries=2,
                       response={"id": "response.body.deal.id"})

    run = run_of(process)

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "response_mapping_failed"
    assert run.error["message"].startswith("Response mapping 'id' failed: ")
    assert StepRun.objects.get(run=run).attempt == 1 and len(echo.calls) == 1  # not retried


def test_a_bad_mapping_in_step_params_is_refused_when_the_process_is_saved(echo):
    from automation.exceptions import DefinitionInvalidError
    from automation.models import ApiProcess

    with pytest.raises(DefinitionInvalidError) as caught:
        one_step("http.request", url=f"{echo.url}/anything",
                 response={"id": "response.body.(", "ok": "response.status == 200"})

    assert list(caught.value.fields) == ["steps[0].config.params.response.id"]
    assert caught.value.message.startswith("steps[0].config.params.response.id: syntax error")
    assert not ApiProcess.objects.exists() and not echo.calls
