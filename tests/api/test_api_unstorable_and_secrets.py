"""What the API refuses before the database sees it (nesting too deep, NUL characters,
lone surrogates, unknown trigger keys) and what it never shows (webhook credentials).

Refusals are alike on SQLite and PostgreSQL: PostgreSQL cannot store NUL or lone
surrogates, so no database is asked to."""

import json

import pytest

from automation.models import ApiProcess, ProcessVersion
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

SECRET = "whsec_round_trip_0123456789"
TOKEN = "tok_round_trip_0123456789"
STEPS = [{"id": "a", "type": "function", "function": "noop"}]
SIGNED = {"type": "webhook", "config": {"path": "/in/signed", "validateSignature": True,
                                        "secret": SECRET}}
TOKENED = {"type": "webhook", "config": {"path": "/in/token", "token": TOKEN}}


def post_raw(api, path: str, raw: str):
    return api.generic("POST", path, raw.encode(), content_type="application/json")


# --- nesting, NUL characters and lone surrogates -------------------------------------

@pytest.mark.parametrize("depth, status", [(100, 201), (101, 400), (900, 400), (5000, 400)])
def test_nesting_beyond_100_levels_is_a_400(api, depth, status):
    metadata = '{"a": ' * (depth - 1) + "1" + "}" * (depth - 1)
    raw = '{"name": "deep", "steps": ' + json.dumps(STEPS) + ', "metadata": ' + metadata + "}"
    answer = post_raw(api, "/api/workflow-definitions", raw)
    if status == 400:
        error = assert_error(answer, 400, "bad_request")
        assert "deeper than 100 levels" in error["message"]
        assert not ApiProcess.objects.exists()
    else:
        assert answer.status_code == 201, answer.content[:300]


@pytest.mark.parametrize("raw, field", [
    ('{"type": "partner.created", "data": {"items": [{"note": "a\\u0000b"}]}}',
     "data.items[0].note"),
    ('{"type": "partner.created", "data": {"k\\u0000": 1}}', "data.k\\u0000"),
    ('{"type": "partner.created", "data": {"note": "\\ud800x"}}', "data.note"),
    ('{"type": "partner.created", "data": {"ok": "\\ud83d\\ude00", "bad": "\\uDFFF"}}',
     "data.bad"),
])
def test_nul_and_lone_surrogates_are_422_naming_the_field(api, raw, field):
    error = assert_error(post_raw(api, "/api/events", raw), 422, "invalid")
    assert list(error["fields"]) == [field], error


def test_a_surrogate_pair_is_ordinary_text(api):
    raw = '{"type": "partner.created", "data": {"ok": "\\ud83d\\ude00"}}'
    assert post_raw(api, "/api/events", raw).status_code == 202


def test_nul_in_a_query_parameter_or_an_id_is_never_looked_up(api):
    error = assert_error(api.get("/api/entities", {"search": "ORD\x00"}), 400, "bad_request")
    assert list(error["fields"]) == ["search"]
    assert_error(api.get("/api/workflow-definitions/a%00b"), 404, "not_found")
    assert_error(api.post("/api/workflow-definitions/a%00b/trigger", {}, format="json"), 404)


def test_an_idempotency_key_with_a_nul_is_a_400(api):
    api.post("/api/workflow-definitions", {"id": "p", "name": "p", "steps": STEPS},
             format="json")
    answer = api.post("/api/workflow-definitions/p/trigger", {}, format="json",
                      headers={"Idempotency-Key": "k\x00"})
    assert_error(answer, 400, "bad_request")


def test_process_save_refuses_unstorable_text_for_every_caller():
    from automation.exceptions import DefinitionInvalidError
    from automation.services.processes import process_save

    steps = [{**STEPS[0], "name": "bad\x00name"}]
    with pytest.raises(DefinitionInvalidError) as caught:
        process_save(slug="p", name="p", definition={"steps": steps})
    assert list(caught.value.fields) == ["steps[0].name"]
    with pytest.raises(DefinitionInvalidError) as caught:
        process_save(slug="p", name="p\ud800", definition={"steps": STEPS})
    assert list(caught.value.fields) == ["name"]
    assert not ApiProcess.objects.exists()


# --- unknown trigger keys ------------------------------------------------------------

def test_unknown_trigger_keys_are_422_naming_each(api):
    triggers = [{"type": "manual"}, {"type": "event", "config": {"eventType": "x.y"},
                                     "conditon": "true", "Condition": "true"}]
    error = assert_error(api.post("/api/workflow-definitions", {
        "name": "x", "steps": STEPS, "triggers": triggers}, format="json"), 422)
    assert sorted(error["fields"]) == ["triggers[1].Condition", "triggers[1].conditon"]
    named = [{"type": "manual", "name": "By hand", "description": "for tests",
              "condition": "true"}]
    assert api.post("/api/workflow-definitions", {"name": "x", "steps": STEPS,
                                                  "triggers": named}, format="json"
                    ).status_code == 201


# --- webhook credentials -------------------------------------------------------------

@pytest.fixture
def hooked(api):
    answer = api.post("/api/workflow-definitions", {"id": "hooked", "name": "Hooked",
                                                    "steps": STEPS,
                                                    "triggers": [SIGNED, TOKENED]},
                      format="json")
    assert answer.status_code == 201, answer.content
    return answer


def stored_configs() -> list[dict]:
    return [t["config"] for t in ApiProcess.objects.get(slug="hooked").definition["triggers"]]


def test_credentials_are_never_returned(api, hooked):
    answers = [hooked, api.get("/api/workflow-definitions/hooked"),
               api.get("/api/workflow-definitions"),
               api.patch("/api/workflow-definitions/hooked", {"name": "Renamed"}, format="json")]
    for answer in answers:
        assert answer.status_code in (200, 201)
        assert SECRET not in answer.content.decode() and TOKEN not in answer.content.decode()
    shown = answers[1].json()["triggers"]
    assert shown == [{"type": "webhook", "config": {"path": "/in/signed",
                                                    "validateSignature": True}},
                     {"type": "webhook", "config": {"path": "/in/token"}}]


def test_a_get_modify_put_round_trip_keeps_the_credentials(api, hooked):
    definition = api.get("/api/workflow-definitions/hooked").json()
    definition["name"] = "Hooked, renamed"
    definition["triggers"].reverse()
    answer = api.put("/api/workflow-definitions/hooked", definition, format="json")
    assert answer.status_code == 200, answer.content
    assert stored_configs() == [TOKENED["config"], SIGNED["config"]]
    assert ProcessVersion.objects.filter(process__slug="hooked").count() == 2  # order changed
    patched = api.patch("/api/workflow-definitions/hooked",
                        {"triggers": answer.json()["triggers"]}, format="json")
    assert patched.status_code == 200, patched.content
    assert stored_configs() == [TOKENED["config"], SIGNED["config"]]
    assert ProcessVersion.objects.filter(process__slug="hooked").count() == 2  # nothing changed


def test_a_new_value_replaces_and_null_removes_a_credential(api, hooked):
    triggers = [{"type": "webhook", "config": {"path": "/in/signed", "validateSignature": True,
                                               "secret": "whsec_rotated_0123456789"}},
                {"type": "webhook", "config": {"path": "/in/token", "validateSignature": True,
                                               "secret": "whsec_instead_0123456789",
                                               "token": None}}]
    answer = api.patch("/api/workflow-definitions/hooked", {"triggers": triggers},
                       format="json")
    assert answer.status_code == 200, answer.content
    assert stored_configs() == [
        {"path": "/in/signed", "validateSignature": True, "secret": "whsec_rotated_0123456789"},
        {"path": "/in/token", "validateSignature": True, "secret": "whsec_instead_0123456789"}]


def test_a_moved_webhook_needs_its_credentials_again(api, hooked):
    triggers = [{"type": "webhook", "config": {"path": "/in/elsewhere"}}]
    error = assert_error(api.patch("/api/workflow-definitions/hooked", {"triggers": triggers},
                                   format="json"), 422)
    assert "triggers[0].config.token" in error["fields"]
    assert stored_configs() == [SIGNED["config"], TOKENED["config"]]
