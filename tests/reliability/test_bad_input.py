"""Bad input: each answered in the one error format {"error": {"code", "message",
"fields"}} with nothing written, quickly, on every writing endpoint. The basic 4xx of
each kind are in tests/api/test_api_errors.py; this covers the hostile sizes and shapes.

PostgreSQL's JSON and text types cannot store NUL characters or lone UTF-16 surrogates
that SQLite stores as they come; they are refused before the database sees them, so
both databases answer alike."""

import json
import time

import pytest
from django.test import Client

from automation.models import (
    ApiProcess,
    Function,
    InboundDelivery,
    Parameters,
    ProcessVersion,
    Run,
    StepRun,
    WebhookSubscription,
)
from automation.services.processes import process_save
from entities.exceptions import EntitiesError
from entities.models import Entity, EntityEvent
from entities.services import entity_create, entity_update
from tests.reliability.support import assert_error, flow_type

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = (Entity, EntityEvent, Run, StepRun, ApiProcess, ProcessVersion, Parameters, Function,
          WebhookSubscription, InboundDelivery)
WRITES = [  # every POST of the API that takes a JSON object, with a valid-looking body
    ("/api/cases", {"firstName": "Ada"}),
    ("/api/events", {"type": "partner.created", "data": {"n": 1}}),
    ("/api/workflow-definitions", {"name": "x", "steps": [
        {"id": "a", "type": "function", "function": "noop"}]}),
    ("/api/workflow-definitions/target/trigger", {"input": {"n": 1}}),
    ("/api/parameters", {"workflowDefinitionId": "target", "parameters": {"n": 1}}),
    ("/api/functions", {"name": "f", "action": "transform", "config": {"output": {}}}),
    ("/api/webhooks", {"url": "https://hooks.invalid/entityflow", "events": ["workflow.completed"],
                       "secret": "whsec-0123456789abcdef"}),
    ("/api/batches", {"entityType": "order", "filter": {}, "process": "target"}),
]
HOOK_TOKEN = "tok_reliability_0123456789"


@pytest.fixture(autouse=True)
def _case(case_type):
    pass


@pytest.fixture
def target():
    """A process for the bodies above to name, and a webhook trigger for /hooks."""
    return process_save(slug="target", name="Target", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "webhook", "config": {"path": "/bad/input", "token": HOOK_TOKEN}}]})


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in TABLES}


def refused(response, status: int, before: dict, *, seconds: float = 5.0, started=None) -> dict:
    error = assert_error(response, status)
    assert counts() == before, "a refused request wrote something"
    if started is not None:
        assert time.monotonic() - started < seconds, "refusing took too long"
    return error


def post_raw(api, path: str, raw: bytes):
    return api.generic("POST", path, raw, content_type="application/json")


MALFORMED = [
    b'{"firstName": ', b'{"a": 1} trailing', b"{'a': 1}", b'{"a": 1,}', b"\xff\xfe{}",
    b'{"a": "\xc3\x28"}', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": ' + b"9" * 5000 + b"}",
    b"[1, 2]", b'"a string"', b"null", b"\x00",
]


@pytest.mark.parametrize("raw", MALFORMED, ids=lambda raw: raw[:12].decode("latin-1"))
def test_malformed_json_is_400_everywhere(api, target, raw):
    before = counts()
    for path, _ in WRITES:
        refused(post_raw(api, path, raw), 400, before)


@pytest.mark.parametrize("shape", ["list", "object"])
def test_json_nested_10000_deep_is_400(api, target, shape):
    deep = ("[" * 10000 + "]" * 10000) if shape == "list" else \
        ('{"a": ' * 10000 + "1" + "}" * 10000)
    before = counts()
    for path, _ in WRITES:
        refused(post_raw(api, path, deep.encode()), 400, before)


def test_json_nested_10000_deep_is_400_at_the_webhook_endpoint(target):
    before = counts()
    raw = ("[" * 10000 + "]" * 10000).encode()
    response = Client().generic("POST", f"/hooks/bad/input?token={HOOK_TOKEN}", raw,
                                content_type="application/json")
    refused(response, 400, before)


def test_10_mb_bodies_are_413_without_being_read(api, target):
    big = b'{"data": {"blob": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
    before = counts()
    for path, _ in WRITES:
        started = time.monotonic()
        refused(post_raw(api, path, big), 413, before, seconds=2, started=started)
    started = time.monotonic()
    hook = Client().generic("POST", f"/hooks/bad/input?token={HOOK_TOKEN}", big,
                            content_type="application/json")
    refused(hook, 413, before, seconds=2, started=started)


WRONG_TYPES = [
    ("/api/cases", {"firstName": ["Ada"]}, "firstName"),
    ("/api/cases", {"firstName": {"first": "Ada"}}, "firstName"),
    ("/api/cases", {"lastName": True}, "lastName"),
    ("/api/events", {"type": ["partner.created"]}, "type"),
    ("/api/events", {"type": "partner.created", "data": "text"}, "data"),
    ("/api/events", {"type": "partner.created", "data": [1, 2]}, "data"),
    ("/api/events", {"type": "partner.created", "timestamp": "yesterday"}, "timestamp"),
    ("/api/events", {"type": "partner created!"}, "type"),
    ("/api/workflow-definitions", {"name": "x", "steps": "a, b"}, "steps"),
    ("/api/workflow-definitions", {"name": "x", "steps": [1, 2]}, "steps"),
    ("/api/workflow-definitions", {"name": "x", "enabled": "maybe", "steps": [
        {"id": "a", "type": "function", "function": "noop"}]}, "enabled"),
    ("/api/workflow-definitions", {"name": "x", "steps": [
        {"id": "a", "type": "function", "function": "noop", "next": 7}]}, "steps"),
    ("/api/workflow-definitions", {"name": "x", "steps": [
        {"id": "a", "type": "function", "function": "noop"}], "triggers": {"type": "manual"}},
     "triggers"),
    # `input` may be any JSON value; a key sent beside it (or instead of it) is named
    ("/api/workflow-definitions/target/trigger", {"total": 20000}, "total"),
    ("/api/workflow-definitions/target/trigger", {"input": {}, "imput": {}}, "imput"),
    ("/api/parameters", {"workflowDefinitionId": "target", "parameters": "text"}, "parameters"),
    ("/api/workflows/run", {"caseId": "not-a-uuid", "workflowDefinitionId": "target"}, "caseId"),
    ("/api/webhooks", {"url": "https://hooks.invalid/entityflow", "events": "workflow.completed",
                       "secret": "whsec-0123456789abcdef"}, "events"),
]


@pytest.mark.parametrize("path, body, field", WRONG_TYPES,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{f}" for p, _, f in WRONG_TYPES])
def test_wrong_types_are_422_naming_the_field(api, target, path, body, field):
    before = counts()
    error = refused(api.post(path, body, format="json"), 422, before)
    assert any(key.split(".")[0].split("[")[0] == field for key in error["fields"]), error


def test_unknown_keys_in_steps_are_refused(api, target):
    before = counts()
    step = {"id": "a", "type": "function", "function": "noop"}
    error = refused(api.post("/api/workflow-definitions", {"name": "x", "steps": [
        {**step, "nxet": "b"}]}, format="json"), 422, before)
    assert "steps[0].nxet" in error["fields"], error


def test_unknown_keys_in_triggers_are_refused(api, target):
    before = counts()
    trigger = {"type": "event", "config": {"eventType": "purchase.created"},
               "conditon": "event.data.total > 10000"}
    error = refused(api.post("/api/workflow-definitions", {"name": "x", "steps": [
        {"id": "a", "type": "function", "function": "noop"}], "triggers": [trigger]},
        format="json"), 422, before)
    assert "triggers[0].conditon" in error["fields"], error


def chain(length: int) -> list[dict]:
    return [{"id": f"s{i}", "type": "function", "function": "noop",
             **({"next": f"s{i + 1}"} if i + 1 < length else {})} for i in range(length)]


def test_a_definition_with_10000_steps_is_refused_quickly(api, target):
    before = counts()
    started = time.monotonic()
    error = refused(api.post("/api/workflow-definitions", {"name": "huge", "steps": chain(10000)},
                             format="json"), 422, before, seconds=3, started=started)
    assert "500" in error["fields"]["steps"][0]
    from automation.exceptions import DefinitionInvalidError

    started = time.monotonic()
    with pytest.raises(DefinitionInvalidError):
        process_save(slug="huge", name="huge", definition={"steps": chain(10000)})
    assert time.monotonic() - started < 3
    assert counts() == before


def test_a_definition_with_500_steps_is_saved_and_runs(api, target):
    answer = api.post("/api/workflow-definitions", {"id": "long", "name": "long",
                                                    "steps": chain(500)}, format="json")
    assert answer.status_code == 201, answer.content[:300]
    started = api.post("/api/workflow-definitions/long/trigger", {}, format="json")
    run = Run.objects.get(pk=started.json()["executionId"])
    assert run.status == Run.Status.COMPLETED and run.steps.count() == 500


CYCLES = {
    "two steps": [{"id": "a", "type": "function", "function": "noop", "next": "b"},
                  {"id": "b", "type": "function", "function": "noop", "next": "a"}],
    "itself": [{"id": "a", "type": "function", "function": "noop", "next": "a"}],
    "through else": [
        {"id": "a", "type": "function", "function": "noop", "next": "c"},
        {"id": "c", "type": "condition", "condition": "true", "next": "d",
         "config": {"else": "a"}},
        {"id": "d", "type": "function", "function": "noop"}],
    "through onError": [
        {"id": "a", "type": "function", "function": "noop", "next": "b"},
        {"id": "b", "type": "function", "function": "noop", "config": {"onError": "a"}}],
    "long": [{"id": f"s{i}", "type": "function", "function": "noop",
              "next": f"s{(i + 1) % 300}"} for i in range(300)],
}


@pytest.mark.parametrize("name", CYCLES)
def test_cyclic_definitions_are_422_naming_the_step(api, target, name):
    before = counts()
    error = refused(api.post("/api/workflow-definitions", {"name": name, "steps": CYCLES[name]},
                             format="json"), 422, before)
    assert any(key.startswith("steps[") for key in error["fields"]), error
    assert "cycle" in json.dumps(error["fields"])


TEXTS = {
    "rtl override": "\u202egnp.exe\u202c",
    "emoji zwj": "👩‍👩‍👧‍👦 🏳️‍🌈",
    "combining": "Zalgo" + "\u0301\u0336" * 40,
    "bidi isolates": "\u2067abc\u2069\u200f",
    "bom and zero width": "\ufeff\u200b\u2060x",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀",
}


@pytest.mark.parametrize("name", TEXTS)
def test_unicode_edge_cases_in_case_fields_round_trip(api, name):
    text = TEXTS[name][:100]
    created = api.post("/api/cases", {"firstName": text, "companyAddress": text * 2},
                       format="json")
    assert created.status_code == 201, created.content[:300]
    case = api.get(f"/api/cases/{created.json()['id']}").json()
    assert case["firstName"] == text and case["companyAddress"] == text * 2


def test_nul_and_10k_character_case_fields_are_422(api):
    before = counts()
    for body in ({"firstName": "Ada\x00Lovelace"}, {"lastName": "x" * 10_000},
                 {"companyAddress": "😀" * 10_000}):
        refused(api.post("/api/cases", body, format="json"), 422, before)


@pytest.mark.parametrize("name", TEXTS)
def test_unicode_edge_cases_in_references_round_trip(api, name):
    entity_type = flow_type()
    entity = entity_create(entity_type=entity_type, reference=TEXTS[name])
    found = api.get("/api/entities", {"search": TEXTS[name][:20]}).json()["results"]
    assert [row["reference"] for row in found] == [TEXTS[name]]
    assert Entity.objects.get(pk=entity.pk).reference == TEXTS[name]


def test_a_10k_character_reference_is_a_clear_error():
    entity_type = flow_type()
    before = counts()
    with pytest.raises(EntitiesError, match="at most 200 characters"):
        entity_create(entity_type=entity_type, reference="R" * 10_000)
    assert counts() == before


@pytest.mark.parametrize("reference", ["ORD\x00-1", "ORD-\ud800"], ids=["nul", "surrogate"])
def test_unstorable_references_are_a_clear_error(reference):
    entity_type = flow_type()
    before = counts()
    with pytest.raises(EntitiesError):
        entity_create(entity_type=entity_type, reference=reference)
    assert counts() == before


def test_unstorable_data_is_a_clear_error_on_create_and_update():
    entity_type = flow_type()
    entity = entity_create(entity_type=entity_type, reference="ORD-1", data={"n": 1})
    before = counts()
    with pytest.raises(EntitiesError) as caught:
        entity_create(entity_type=entity_type, reference="ORD-2", data={"note": ["a\x00"]})
    assert list(caught.value.fields) == ["data.note[0]"]
    with pytest.raises(EntitiesError) as caught:
        entity_update(entity=entity, data={"\udc00": 1}, merge=True)
    assert list(caught.value.fields) == ["data.\\udc00"]
    assert counts() == before
    assert Entity.objects.get(pk=entity.pk).data == {"n": 1}


JSON_BODIES = [  # NUL and a lone surrogate, inside the JSON objects the API stores
    ("/api/events", '{"type": "partner.created", "data": {"note": "a\\u0000b"}}'),
    ("/api/events", '{"type": "partner.created", "data": {"a\\u0000": 1}}'),
    ("/api/events", '{"type": "partner.created", "data": {"note": "\\ud800"}}'),
    ("/api/workflow-definitions/target/trigger", '{"input": {"note": "a\\u0000b"}}'),
    ("/api/workflow-definitions/target/trigger", '{"input": {"note": "\\udc00"}}'),
    ("/api/parameters", '{"workflowDefinitionId": "target", "parameters": {"n": "\\u0000"}}'),
    ("/api/workflow-definitions", '{"name": "x", "metadata": {"n": "\\u0000"}, "steps": '
                                  '[{"id": "a", "type": "function", "function": "noop"}]}'),
]


@pytest.mark.parametrize("path, raw", JSON_BODIES,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{i}"
                              for i, (p, _) in enumerate(JSON_BODIES)])
def test_nul_and_lone_surrogates_in_stored_json_are_never_a_500(api, target, path, raw):
    before = counts()
    response = post_raw(api, path, raw.encode())
    assert response.status_code < 500, (response.status_code, response.content[:200])
    if response.status_code >= 400:
        refused(response, response.status_code, before)


def test_a_lone_surrogate_in_a_webhook_body_is_never_a_500(target):
    before = counts()
    response = Client().generic("POST", f"/hooks/bad/input?token={HOOK_TOKEN}",
                                b'{"note": "\\ud800"}', content_type="application/json")
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        refused(response, response.status_code, before)


@pytest.mark.parametrize("verb", ["get", "put", "delete"])
def test_a_nul_in_a_path_is_never_a_500(api, target, verb):
    response = getattr(api, verb)("/api/functions/a%00b", {"name": "a", "action": "transform",
                                                           "config": {"output": {}}},
                                  format="json")
    assert response.status_code in (400, 404, 422), (response.status_code, response.content[:200])
    assert_error(response, response.status_code)
