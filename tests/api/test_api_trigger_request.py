"""The API trigger's leaner request path (docs/performance.md, "The API trigger's request
path") answers exactly what DRF's general one answers: the body read as its serializer
reads it, the renderer DRF's content negotiation picks, and every address routed to the
view it was routed to before the trigger's route moved first."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from automation.api.auth import read_with_token
from automation.api.base import ApiView, _any_json_defaults, validate_input
from automation.api.definition_apis import _TRIGGERED, TRIGGER_READS, DefinitionTriggerApi
from automation.models import ApiProcess, ApiToken, ProcessBreaker, Run
from automation.services.api_auth import ApiAuthError, token_client, token_client_with
from automation.services.breaker import pause
from automation.services.processes import process_save
from tests.api.support import API_DB, assert_error

TRIGGER_BODY = DefinitionTriggerApi.InputSerializer
BODIES = [{}, {"input": None}, {"input": {}}, {"input": 0}, {"input": False}, {"input": "x"},
          {"input": [1, None, {"a": [2.5, "b"]}]}, {"input": {"n": 1, "nested": {"k": None}}}]


def serializer_reads(body: dict) -> dict:
    """What the serializer itself validates `body` to (the general way)."""
    serializer = TRIGGER_BODY(data=body)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@pytest.mark.parametrize("body", BODIES, ids=repr)
def test_a_trigger_body_reads_as_its_serializer_reads_it(body):
    assert _any_json_defaults(TRIGGER_BODY) is not None  # read without the serializer
    assert validate_input(TRIGGER_BODY, body) == serializer_reads(body)


def test_a_trigger_body_with_another_key_is_the_serializers_422():
    with pytest.raises(ValidationError) as raised:
        validate_input(TRIGGER_BODY, {"input": {}, "inputs": {}})
    assert set(raised.value.detail) == {"inputs"}


@pytest.mark.parametrize("value", [{1, 2}, 1e308 * 10, [float("nan")]], ids=repr)
def test_a_value_that_is_not_json_is_the_serializers_422(value):
    """A number too large for a float parses to infinity, which DRF's JSONField refuses."""
    with pytest.raises(ValidationError) as raised:
        validate_input(TRIGGER_BODY, {"input": value})
    assert set(raised.value.detail) == {"input"}


class _OneRenderer(ApiView):
    pass


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*",
                                    "application/json; indent=4", "*/*; q=0.5", "text/html",
                                    "", "text/html, */*"])
@pytest.mark.parametrize("query", ["", "?format=json", "?format=xml"])
def test_the_renderer_is_the_one_drfs_negotiation_picks(accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}

    def negotiated(view_class):
        view = view_class()
        request = view.initialize_request(APIRequestFactory().post(f"/api/x{query}", **headers))
        view.format_kwarg = None
        try:
            renderer, media_type = view.perform_content_negotiation(request)
        except (NotAcceptable, Exception) as exc:  # noqa: BLE001 - compared, not handled
            return type(exc)
        return type(renderer), media_type

    assert negotiated(_OneRenderer) == negotiated(type("Drf", (APIView,), {
        "renderer_classes": _OneRenderer.renderer_classes}))


@pytest.mark.parametrize(("address", "view"), [
    ("/api/workflow-definitions/ship/trigger", "DefinitionTriggerApi"),
    ("/api/workflow-definitions/ship", "DefinitionDetailDefinitionReplaceDefinitionUpdate"
                                       "DefinitionDisableApi"),
    ("/api/workflow-definitions/ship/pause", "DefinitionPauseApi"),
    ("/api/workflow-definitions/ship/trigger/", "NotFoundApi"),
    ("/api/workflow-definitions/a/b/trigger", "NotFoundApi"),
])
def test_addresses_route_to_the_views_they_did(address, view):
    assert resolve(address).func.view_class.__name__ == view


@API_DB
def test_a_trigger_answers_as_before(api):
    process_save(slug="ship", name="Ship", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})
    started = api.post("/api/workflow-definitions/ship/trigger", {"input": None}, format="json")
    assert started.status_code == 202
    assert started["Content-Type"] == "application/json"
    assert started["Allow"] == "POST, OPTIONS"
    run = Run.objects.get(pk=started.json()["executionId"])
    assert run.input == {} and run.entity_id is None and run.event_id is None
    assert run.steps.get().input == {}
    error = assert_error(api.post("/api/workflow-definitions/ship/trigger",
                                  {"input": {}, "imput": 1}, format="json"), 422)
    assert set(error["fields"]) == {"imput"}
    assert_error(api.post("/api/workflow-definitions/ship/trigger", {}, format="json",
                          HTTP_ACCEPT="text/html"), 406)



def _process_reads(queries) -> list[str]:
    """The statements that read the process table other than the trigger's own look-up
    (on PostgreSQL prepared once per connection, then sent by name); a
    column read from the instance that the look-up left out would be one."""
    own = _TRIGGERED.compiled_for(None)[1].split(" WHERE ")[0]
    table = f'FROM "{ApiProcess._meta.db_table}"'
    return [query["sql"] for query in queries.captured_queries
            if table in query["sql"] and own not in query["sql"]]


@API_DB
@pytest.mark.parametrize("wait", ["", "?wait=1"])
def test_a_trigger_reads_the_process_row_once(api, queued_mode, wait):
    """The trigger reads only some of the process's columns (definition_apis.TRIGGER_READS):
    nothing a start, its admission or its answer does reads another one, which would be a
    query of its own; nor when its breaker has paused it (the start is held, 409)."""
    process = process_save(slug="ship", name="Ship", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})
    api.post("/api/workflow-definitions/ship/trigger", {}, format="json")  # breaker's counts
    with CaptureQueriesContext(connection) as queries:
        started = api.post(f"/api/workflow-definitions/ship/trigger{wait}",
                           {"input": {"n": 1}}, format="json")
    assert started.status_code == 202 and _process_reads(queries) == []
    pause(process=process, reason="test")
    with CaptureQueriesContext(connection) as queries:
        held = api.post("/api/workflow-definitions/ship/trigger", {}, format="json")
    assert held.status_code == 409 and _process_reads(queries) == []


def _tables_read(sql: str, connection) -> str:
    """The statement's SQL; on PostgreSQL a prepared statement sent by name (`EXECUTE
    entityflow_read_…(…)`) is looked up by its name among the connection's."""
    if sql.startswith("EXECUTE "):
        name = sql.split()[1].split("(")[0]
        named = {prepared_name: text for text, prepared_name
                 in connection._entityflow_prepared.names.items()}
        return named[name]
    return sql


@API_DB
def test_a_trigger_reads_its_token_and_its_process_in_one_statement(api, queued_mode):
    """One round trip for both on PostgreSQL (automation.api.auth.read_with_token): the
    statement that reads the token is the only one that reads the process."""
    process_save(slug="ship", name="Ship", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})
    api.post("/api/workflow-definitions/ship/trigger", {}, format="json")  # prepared, counted
    with CaptureQueriesContext(connection) as queries:
        started = api.post("/api/workflow-definitions/ship/trigger", {}, format="json")
    assert started.status_code == 202
    statements = [_tables_read(query["sql"], connection) for query in queries.captured_queries]
    tokens = [sql for sql in statements if f'"{ApiToken._meta.db_table}"' in sql]
    processes = [sql for sql in statements if f'FROM "{ApiProcess._meta.db_table}"' in sql]
    assert len(tokens) == 1 and processes == tokens


@API_DB
def test_the_process_read_with_the_token_is_the_one_it_reads_alone(tokens):
    process = process_save(slug="ship", name="Ship", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})
    ProcessBreaker.objects.create(process=process, limits={"perMinute": 5})
    client, read = token_client_with(tokens["accessToken"], _TRIGGERED, "ship")
    alone = _TRIGGERED.first("ship")
    assert client == token_client(tokens["accessToken"])
    assert vars(client).keys() == vars(token_client(tokens["accessToken"])).keys()
    assert read == alone and read.get_deferred_fields() == alone.get_deferred_fields()
    assert {name: getattr(read, name) for name in TRIGGER_READS} == \
        {name: getattr(alone, name) for name in TRIGGER_READS}
    assert read.breaker.limits == {"perMinute": 5}
    assert token_client_with(tokens["accessToken"], _TRIGGERED, "other") == (client, None)
    with pytest.raises(ApiAuthError, match="not valid"):
        token_client_with("eat_unknown", _TRIGGERED, "ship")
    ApiToken.objects.update(revoked=True)
    with pytest.raises(ApiAuthError, match="not valid"):
        token_client_with(tokens["accessToken"], _TRIGGERED, "ship")


@API_DB
def test_the_process_read_with_the_token_serves_one_read(tokens):
    """Taken once: a view run again (a lost connection) reads the process again, so it
    sees what changed in between; a view that declares nothing reads it itself."""
    process_save(slug="ship", name="Ship", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})
    view = DefinitionTriggerApi()
    view.args, view.kwargs = (), {"id": "ship"}  # as dispatch sets them
    request = view.initialize_request(APIRequestFactory().post(
        "/api/workflow-definitions/ship/trigger",
        HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}"))
    assert request.user.is_authenticated
    with CaptureQueriesContext(connection) as queries:
        first = read_with_token(request, _TRIGGERED, "ship")
    assert first.enabled and len(queries) == 0
    ApiProcess.objects.filter(slug="ship").update(enabled=False)
    with CaptureQueriesContext(connection) as queries:
        again = read_with_token(request, _TRIGGERED, "ship")
    assert not again.enabled and len(queries) >= 1  # (PostgreSQL: PREPARE, EXECUTE)


@API_DB
@pytest.mark.parametrize("token", ["eat_unknown", None])
def test_a_trigger_with_a_bad_token_is_401_and_a_missing_process_404(api, anon, tokens, token):
    if token is None:  # a revoked one, whose process exists
        process_save(slug="ship", name="Ship", definition={
            "steps": [{"id": "a", "type": "function", "function": "noop"}],
            "triggers": [{"type": "manual"}]})
        ApiToken.objects.update(revoked=True)
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token or tokens['accessToken']}")
    assert_error(anon.post("/api/workflow-definitions/ship/trigger", {}, format="json"), 401)
    assert not Run.objects.exists()
    if token is not None:
        assert_error(api.post("/api/workflow-definitions/ship/trigger", {}, format="json"),
                     404, "not_found")
