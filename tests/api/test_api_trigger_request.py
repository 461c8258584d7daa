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

from automation.api.base import ApiView, _any_json_defaults, validate_input
from automation.api.definition_apis import _TRIGGERED, DefinitionTriggerApi
from automation.models import ApiProcess, Run
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
    own = _TRIGGERED._compiled_for(None)[1].split(" WHERE ")[0]
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
