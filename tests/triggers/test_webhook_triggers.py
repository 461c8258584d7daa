import json
import time

import pytest
from django.test import Client

from automation.definitions.webhook_config import validate_webhook_config
from automation.models import InboundDelivery, ProcessTrigger, Run
from automation.services.processes import process_set_enabled
from automation.triggers.webhooks.services import webhook_triggers_for
from integrations.signing import sign

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_0123456789"
TOKEN = "tok_abcdefghijklmnop"
SIGNED = {"type": "webhook", "config": {"path": "/webhooks/stripe", "method": "POST",
                                        "validateSignature": True, "secret": SECRET}}
TOKENED = {"type": "webhook", "config": {"path": "/webhooks/shop", "token": TOKEN}}


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def signed_process(save_process):
    return save_process("stripe-payments", [SIGNED])


def post(client, path, body, *, secret=SECRET, timestamp=None, headers=None, method="POST"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = dict(headers or {})
    if secret:
        sent["X-Entityflow-Signature"] = sign(secret, raw, timestamp)
    return client.generic(method, path, raw, content_type="application/json", headers=sent)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# --- Signed webhooks ----------------------------------------------------------------

def test_the_same_delivery_three_times_starts_exactly_one_run(client, signed_process, committed):
    payload = {"type": "charge.succeeded", "amount": 4200}
    answers = []
    for _ in range(3):
        with committed():
            answers.append(post(client, "/hooks/webhooks/stripe", payload,
                                headers={"X-Entityflow-Delivery": "evt_1"}))
    assert [a.status_code for a in answers] == [202, 200, 200]
    run_id = answers[0].json()["executionId"]
    assert answers[0].json() == {"started": True, "executionId": run_id}
    assert answers[1].json() == answers[2].json() == {
        "started": False, "duplicate": True, "executionId": run_id}
    run = Run.objects.get(process=signed_process)
    assert str(run.pk) == run_id
    assert run.input == payload
    assert run.status == Run.Status.COMPLETED
    assert run.trigger["deliveryId"] == "evt_1"
    assert "x-entityflow-signature" not in run.trigger["event"]["headers"]
    assert InboundDelivery.objects.get(process=signed_process, delivery_id="evt_1").run_id == run.pk
    assert {row.run_id for row in InboundDelivery.objects.filter(process=signed_process)} == {
        run.pk}


@pytest.mark.parametrize("header", ["X-Delivery-Id", "Idempotency-Key"])
def test_other_delivery_id_headers_deduplicate_too(client, signed_process, header):
    for _ in range(2):
        post(client, "/hooks/webhooks/stripe", {"n": 1}, headers={header: "abc-1"})
    assert Run.objects.filter(process=signed_process).count() == 1


def test_without_a_delivery_id_the_body_hash_deduplicates(client, signed_process):
    statuses = [post(client, "/hooks/webhooks/stripe", {"n": n}).status_code for n in (1, 1, 2)]
    assert statuses == [202, 200, 202]
    assert Run.objects.filter(process=signed_process).count() == 2


def test_a_signed_request_replayed_with_a_new_delivery_id_is_a_duplicate(client, signed_process):
    raw = b'{"type": "charge.succeeded", "amount": 4200}'
    header = sign(SECRET, raw)
    first = post(client, "/hooks/webhooks/stripe", raw, secret=None,
                 headers={"X-Entityflow-Signature": header, "X-Entityflow-Delivery": "evt_7"})
    assert first.status_code == 202
    for forged in ({"X-Entityflow-Delivery": "evt_8"}, {"Idempotency-Key": "key-8"}, {}):
        replay = post(client, "/hooks/webhooks/stripe", raw, secret=None,
                      headers={"X-Entityflow-Signature": header, **forged})
        assert replay.status_code == 200, replay.content
        assert replay.json() == {"started": False, "duplicate": True,
                                 "executionId": first.json()["executionId"]}
    assert Run.objects.filter(process=signed_process).count() == 1


def test_a_sender_retry_signed_again_later_keeps_its_delivery_id(client, signed_process):
    raw = b'{"type": "charge.succeeded", "amount": 4200}'
    now = int(time.time())
    answers = [post(client, "/hooks/webhooks/stripe", raw, timestamp=stamp,
                    headers={"X-Entityflow-Delivery": "evt_9"}) for stamp in (now - 60, now)]
    assert [a.status_code for a in answers] == [202, 200]
    assert Run.objects.filter(process=signed_process).count() == 1


def test_a_delivery_id_shaped_like_a_signature_key_cannot_take_its_place(client, signed_process):
    raw = b'{"n": 1}'
    header = sign(SECRET, raw)
    first = post(client, "/hooks/webhooks/stripe", raw, secret=None,
                 headers={"X-Entityflow-Signature": header, "X-Entityflow-Delivery": "evt_10"})
    key = InboundDelivery.objects.exclude(delivery_id="evt_10").get().delivery_id
    other = b'{"n": 2}'
    second = post(client, "/hooks/webhooks/stripe", other,
                  headers={"X-Entityflow-Delivery": key})
    assert (first.status_code, second.status_code) == (202, 202)
    assert Run.objects.filter(process=signed_process).count() == 2


def test_a_replay_with_an_old_timestamp_is_refused(client, signed_process):
    old = int(time.time()) - 301
    error = assert_error(post(client, "/hooks/webhooks/stripe", {"n": 1}, timestamp=old), 401,
                         "invalid_signature")
    assert "300 s tolerance" in error["message"]
    assert not Run.objects.exists()


def test_a_bad_or_missing_signature_is_refused(client, signed_process):
    assert_error(post(client, "/hooks/webhooks/stripe", {"n": 1}, secret="whsec_wrong"), 401,
                 "invalid_signature")
    assert_error(post(client, "/hooks/webhooks/stripe", {"n": 1}, secret=None), 401,
                 "invalid_signature")
    tampered = post(client, "/hooks/webhooks/stripe", b'{"n": 1}',
                    headers={"X-Entityflow-Signature": sign(SECRET, b'{"n": 2}')}, secret=None)
    assert_error(tampered, 401, "invalid_signature")
    assert not Run.objects.exists() and not InboundDelivery.objects.exists()


def test_wrong_method_unknown_path_and_oversized_body(client, signed_process):
    wrong = post(client, "/hooks/webhooks/stripe", b"", method="GET")
    assert_error(wrong, 405, "method_not_allowed")
    assert wrong["Allow"] == "POST"
    assert_error(post(client, "/hooks/webhooks/nobody", {"n": 1}), 404, "not_found")
    assert_error(post(client, "/hooks/", {"n": 1}), 404, "not_found")
    big = json.dumps({"blob": "x" * (256 * 1024)}).encode()
    assert_error(post(client, "/hooks/webhooks/stripe", big), 413, "payload_too_large")
    assert not Run.objects.exists()


def test_the_size_limit_is_a_setting(client, signed_process, settings):
    settings.ENTITYFLOW_WEBHOOK_MAX_BYTES = 10
    assert_error(post(client, "/hooks/webhooks/stripe", {"n": 12345}), 413, "payload_too_large")
    assert post(client, "/hooks/webhooks/stripe", {"n": 1}).status_code == 202


def test_a_signed_body_that_is_not_json_is_a_bad_request(client, signed_process):
    assert_error(post(client, "/hooks/webhooks/stripe", b"amount=5"), 400, "bad_request")
    assert_error(post(client, "/hooks/webhooks/stripe", b'{"n": NaN}'), 400, "bad_request")
    assert_error(post(client, "/hooks/webhooks/stripe", b'{"n": "\\u0000"}'), 400, "bad_request")
    error = assert_error(post(client, "/hooks/webhooks/stripe", b'{"a": [{"n": "\\udc00"}]}'),
                         400, "bad_request")
    assert list(error["fields"]) == ["body.a[0].n"]
    deep = b'{"a": ' * 101 + b"1" + b"}" * 101
    assert_error(post(client, "/hooks/webhooks/stripe", deep), 400, "bad_request")
    assert post(client, "/hooks/webhooks/stripe", b'{"a": ' * 99 + b"1" + b"}" * 99
                ).status_code == 202
    assert Run.objects.count() == 1


def test_a_disabled_process_does_not_listen(client, signed_process, committed):
    with committed():
        process_set_enabled(process=signed_process, enabled=False)
    assert_error(post(client, "/hooks/webhooks/stripe", {"n": 1}), 404, "not_found")


def test_the_lookup_is_one_indexed_query(signed_process, save_process, django_assert_num_queries):
    for n in range(5):
        save_process(f"other-{n}", [{"type": "webhook", "config": {
            "path": f"/webhooks/other-{n}", "token": TOKEN}}])
    with django_assert_num_queries(1):
        found = webhook_triggers_for("webhooks/stripe", "POST")
    assert [t.process_id for t in found] == [signed_process.pk]


# --- Token webhooks -----------------------------------------------------------------

def test_token_webhooks(client, save_process):
    process = save_process("shop-orders", [TOKENED])
    assert_error(post(client, "/hooks/webhooks/shop?token=wrong-token-value", {"n": 1},
                      secret=None), 401, "invalid_token")
    assert_error(post(client, "/hooks/webhooks/shop", {"n": 1}, secret=None), 401,
                 "invalid_token")
    good = post(client, f"/hooks/webhooks/shop?token={TOKEN}", {"n": 1}, secret=None)
    assert good.status_code == 202
    assert good.json()["executionId"] == str(Run.objects.get(process=process).pk)


def test_processes_sharing_a_path_each_check_their_own_credentials(client, save_process):
    mine = save_process("mine", [TOKENED])
    save_process("theirs", [{"type": "webhook", "config": {
        "path": "/webhooks/shop", "token": "another-token-0123456"}}])
    answer = post(client, f"/hooks/webhooks/shop?token={TOKEN}", {"n": 1}, secret=None)
    assert answer.status_code == 202
    assert list(Run.objects.values_list("process_id", flat=True)) == [mine.pk]


# --- Conditions ---------------------------------------------------------------------

def test_a_condition_on_the_body_starts_a_run_only_when_it_holds(client, save_process):
    process = save_process("big-orders", [{**TOKENED, "condition": "input.total > 100"}])
    url = f"/hooks/webhooks/shop?token={TOKEN}"
    skipped = post(client, url, {"total": 50}, secret=None)
    assert (skipped.status_code, skipped.json()) == (202, {"started": False})
    assert not Run.objects.exists() and not InboundDelivery.objects.exists()
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1

    started = post(client, url, {"total": 500}, secret=None)
    assert started.status_code == 202 and started.json()["started"] is True
    assert Run.objects.get(process=process).input == {"total": 500}
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1


def test_a_condition_sees_the_event_data_and_safe_headers(client, save_process):
    condition = 'event.data.kind === "refund" && event.headers["x-shop"] == "north"'
    save_process("refunds", [{**TOKENED, "condition": condition}])
    url = f"/hooks/webhooks/shop?token={TOKEN}"
    assert post(client, url, {"kind": "refund"}, secret=None,
                headers={"X-Shop": "south"}).json() == {"started": False}
    assert post(client, url, {"kind": "refund"}, secret=None,
                headers={"X-Shop": "north"}).json()["started"] is True


# --- Config validation --------------------------------------------------------------

@pytest.mark.parametrize(("config", "errors"), [
    (SIGNED["config"], {}),
    (TOKENED["config"], {}),
    ({"path": "/webhooks/open"},
     {"config.token": ["A webhook needs validateSignature with a secret, or a token."]}),
    ({"path": "/x", "validateSignature": True},
     {"config.secret": ["A signed webhook needs the secret its sender signs with."]}),
    ({"path": "/x", "token": "short"},
     {"config.token": ["The token must be a string of at least 16 characters."]}),
    ({"path": "webhooks/x", "token": TOKEN, "method": "FETCH"}, {
        "config.path": ["The path must start with '/' and hold only URL path characters, "
                        "for example /webhooks/stripe."],
        "config.method": ["The method must be one of POST, PUT, PATCH, GET, DELETE."]}),
])
def test_validate_webhook_config(config, errors):
    assert validate_webhook_config(config) == errors
