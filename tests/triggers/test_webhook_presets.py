"""Inbound webhooks signed the way each vendor signs them (config.verify presets).

Requests are signed exactly as each vendor documents it: GitHub's and Slack's published
examples, Stripe's `t=…,v1=…` scheme, the `standardwebhooks` package itself, Shopify's
base64 HMAC. Each delivery is accepted once; the vendor's retry of it is a duplicate that
starts nothing; a tampered body, a wrong secret or a stale timestamp is a 401 and stores
nothing; during a rotation both secrets work.
"""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from django.test import Client
from standardwebhooks import Webhook

from automation.definitions.webhook_verify import Verification
from automation.models import InboundDelivery, Run
from automation.triggers.webhooks.presets import verify_signed
from integrations.exceptions import SignatureError

pytestmark = pytest.mark.django_db

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example
OTHER_STANDARD_SECRET = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="


def hexmac(secret: str, message: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), message, digest).hexdigest()


def b64mac(secret: str, message: bytes, digest=hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, digest).digest()).decode()


# --- how each vendor signs (its documented algorithm) ---------------------------------

def stripe(secret: str, body: bytes, stamp: int, **_) -> dict:
    v1 = hexmac(secret, f"{stamp}.".encode() + body)
    return {"Stripe-Signature": f"t={stamp},v1={v1},v0={'0' * 64}"}


def github(secret: str, body: bytes, stamp: int, delivery: str = "") -> dict:
    return {"X-Hub-Signature-256": "sha256=" + hexmac(secret, body),
            "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}


def shopify(secret: str, body: bytes, stamp: int, delivery: str = "") -> dict:
    return {"X-Shopify-Hmac-Sha256": b64mac(secret, body), "X-Shopify-Webhook-Id": delivery,
            "X-Shopify-Topic": "orders/create"}


def slack(secret: str, body: bytes, stamp: int, **_) -> dict:
    return {"X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": "v0=" + hexmac(secret, f"v0:{stamp}:".encode() + body)}


def standard(secret: str, body: bytes, stamp: int, delivery: str = "") -> dict:
    signature = Webhook(secret).sign(delivery, datetime.fromtimestamp(stamp, tz=UTC),
                                     body.decode())
    return {"webhook-id": delivery, "webhook-timestamp": str(stamp),
            "webhook-signature": signature}


def custom_hmac(secret: str, body: bytes, stamp: int, delivery: str = "") -> dict:
    signature = b64mac(secret, f"{stamp}:".encode() + body, hashlib.sha512)
    return {"X-Acme-Signature": "sha512=" + signature, "X-Acme-Time": str(stamp),
            "X-Acme-Delivery": delivery}


HMAC_VERIFY = {"preset": "hmac", "header": "X-Acme-Signature", "algorithm": "sha512",
               "encoding": "base64", "prefix": "sha512=", "timestampHeader": "X-Acme-Time",
               "signedPayload": "{timestamp}:{body}", "deliveryHeader": "X-Acme-Delivery"}

# (preset, signer, a secret, another secret, the delivery's body as the vendor sends it,
#  whether the scheme carries a timestamp)
CASES = {
    "stripe": (stripe, "whsec_stripe_new", "whsec_stripe_old",
               {"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event",
                "type": "charge.succeeded", "data": {"object": {"amount": 4200}}}, True),
    "github": (github, "gh-secret-new", "gh-secret-old",
               {"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}}, False),
    "shopify": (shopify, "shpss_new_0123", "shpss_old_0123",
                {"id": 820982911946154508, "email": "jon@example.com"}, False),
    "slack": (slack, "8f742231b10e8888abcd99yyyzzz85a5", "slack-old-secret",
              {"type": "event_callback", "event_id": "Ev08MFMKH6",
               "event": {"type": "app_mention", "text": "hi"}}, True),
    "standard-webhooks": (standard, STANDARD_SECRET, OTHER_STANDARD_SECRET,
                          {"type": "invoice.paid", "amount": 12}, True),
    "hmac": (custom_hmac, "acme-secret-new", "acme-secret-old", {"order": 7}, True),
}


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


def config_for(preset: str, secret: str, **extra) -> dict:
    verify = HMAC_VERIFY if preset == "hmac" else preset
    return {"path": f"/vendors/{preset}", "verify": verify, "secret": secret, **extra}


def send(client, preset: str, body: bytes, headers: dict):
    return client.post(f"/hooks/vendors/{preset}", body, content_type="application/json",
                       headers=headers)


@pytest.mark.parametrize("preset", list(CASES))
def test_a_vendor_delivery_is_accepted_once_and_its_retry_is_a_duplicate(
        client, save_process, preset):
    signer, secret, _, payload, _ = CASES[preset]
    process = save_process(f"from-{preset}", [{"type": "webhook",
                                               "config": config_for(preset, secret)}])
    body = json.dumps(payload).encode()
    now = int(time.time())
    first = send(client, preset, body, signer(secret, body, now - 30, delivery="dlv-1"))
    assert first.status_code == 202, first.content
    run = Run.objects.get(process=process)
    assert run.input == payload
    assert first.json() == {"started": True, "executionId": str(run.pk)}
    # the vendor retries the same delivery later, signed again
    retry = send(client, preset, body, signer(secret, body, now, delivery="dlv-1"))
    assert retry.status_code == 200, retry.content
    assert retry.json() == {"started": False, "duplicate": True, "executionId": str(run.pk)}
    assert Run.objects.filter(process=process).count() == 1
    hidden = {"stripe-signature", "x-hub-signature-256", "x-shopify-hmac-sha256",
              "x-slack-signature", "webhook-signature", "x-acme-signature"}
    assert not hidden & set(run.trigger["event"]["headers"])


@pytest.mark.parametrize("preset", list(CASES))
def test_tampered_wrong_secret_and_stale_deliveries_are_refused(client, save_process, preset):
    signer, secret, other, payload, stamped = CASES[preset]
    save_process(f"from-{preset}", [{"type": "webhook", "config": config_for(preset, secret)}])
    body, now = json.dumps(payload).encode(), int(time.time())
    tampered = send(client, preset, body.replace(b"}", b', "x": 1}', 1),
                    signer(secret, body, now, delivery="dlv-2"))
    wrong = send(client, preset, body, signer(other, body, now, delivery="dlv-3"))
    answers = [tampered, wrong]
    if stamped:
        answers.append(send(client, preset, body, signer(secret, body, now - 301,
                                                         delivery="dlv-4")))
        assert "tolerance" in answers[-1].json()["error"]["message"]
    for answer in answers:
        assert answer.status_code == 401, answer.content
        assert answer.json()["error"]["code"] == "invalid_signature"
    assert send(client, preset, body, {}).status_code == 401
    assert not Run.objects.exists() and not InboundDelivery.objects.exists()


@pytest.mark.parametrize("preset", list(CASES))
def test_both_secrets_work_while_a_rotation_overlaps(client, save_process, preset):
    signer, new, old, payload, _ = CASES[preset]
    trigger = {"type": "webhook", "config": config_for(preset, new, previousSecret=old)}
    process = save_process(f"from-{preset}", [trigger])
    now = int(time.time())
    for n, secret in enumerate((new, old)):
        body = json.dumps({**payload, "id": f"evt_rot_{n}", "event_id": f"Ev{n}"}).encode()
        answer = send(client, preset, body, signer(secret, body, now, delivery=f"rot-{n}"))
        assert answer.status_code == 202, (secret, answer.content)
    assert Run.objects.filter(process=process).count() == 2
    # the rotation ends: the old secret is removed and no longer accepted
    save_process(f"from-{preset}", [{"type": "webhook", "config": config_for(preset, new)}])
    body = json.dumps({**payload, "id": "evt_rot_2", "event_id": "Ev2"}).encode()
    assert send(client, preset, body, signer(old, body, now, delivery="rot-2")
                ).status_code == 401


def test_stripe_dedupes_by_the_event_id_in_the_body(client, save_process):
    save_process("stripe", [{"type": "webhook", "config": config_for("stripe", "whsec_s")}])
    body = json.dumps(CASES["stripe"][3]).encode()
    send(client, "stripe", body, stripe("whsec_s", body, int(time.time())))
    assert InboundDelivery.objects.filter(delivery_id="evt_1NG8Du2eZvKYlo2CUI79vXWy").exists()


def test_stripe_rolling_its_own_secret_sends_two_v1_and_either_may_match(client, save_process):
    save_process("stripe", [{"type": "webhook", "config": config_for("stripe", "whsec_new")}])
    body, now = b'{"id": "evt_roll", "object": "event"}', int(time.time())
    header = (f"t={now},v1={hexmac('whsec_expired', f'{now}.'.encode() + body)},"
              f"v1={hexmac('whsec_new', f'{now}.'.encode() + body)}")
    assert send(client, "stripe", body, {"Stripe-Signature": header}).status_code == 202


def test_a_token_preset_compares_the_configured_header(client, save_process):
    config = {"path": "/vendors/gitlab", "verify": {"preset": "token", "header": "X-Gitlab-Token"},
              "secret": "glpat-token-value-1", "previousSecret": "glpat-token-value-0"}
    process = save_process("gitlab", [{"type": "webhook", "config": config}])
    url = "/hooks/vendors/gitlab"
    wrong = client.post(url, b"{}", content_type="application/json",
                        headers={"X-Gitlab-Token": "glpat-guess"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_token")
    assert client.post(url, b"{}", content_type="application/json").status_code == 401
    for n, token in enumerate(("glpat-token-value-1", "glpat-token-value-0")):
        answer = client.post(url, json.dumps({"n": n}), content_type="application/json",
                             headers={"X-Gitlab-Token": token})
        assert answer.status_code == 202
    run = Run.objects.filter(process=process).first()
    assert "x-gitlab-token" not in run.trigger["event"]["headers"]


# --- the vendors' published examples, checked by the verifier directly ------------------

def test_githubs_published_example():
    headers = {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c"
                                      "46f4379c8b043e17"}
    verify_signed(Verification("github"), ["It's a Secret to Everybody"], b"Hello, World!",
                  headers)
    with pytest.raises(SignatureError):
        verify_signed(Verification("github"), ["It's a Secret to Everybody"],
                      b"Hello, World?", headers)


def test_slacks_published_example():
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
            b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
            b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    headers = {"X-Slack-Request-Timestamp": "1531420618",
               "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd2751966"
                                    "6489c69b503"}
    verify_signed(Verification("slack"), ["8f742231b10e8888abcd99yyyzzz85a5"], body, headers,
                  now=1531420618 + 60)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signed(Verification("slack"), ["8f742231b10e8888abcd99yyyzzz85a5"], body,
                      headers, now=1531420618 + 301)


def test_the_standard_webhooks_specifications_example():
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    verify_signed(Verification("standard-webhooks"), [STANDARD_SECRET],
                  b'{"test": 2432232314}', headers, now=1614265330)
    with pytest.raises(SignatureError):
        verify_signed(Verification("standard-webhooks"), [STANDARD_SECRET],
                      b'{"test": 2432232315}', headers, now=1614265330)


def test_slacks_url_check_is_answered_with_its_challenge_and_starts_nothing(
        client, save_process):
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    save_process("slack", [{"type": "webhook", "config": config_for("slack", secret)}])
    body = json.dumps({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
                       "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
                      ).encode()
    answer = send(client, "slack", body, slack(secret, body, int(time.time())))
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert not Run.objects.exists() and not InboundDelivery.objects.exists()
    forged = send(client, "slack", body, slack("wrong", body, int(time.time())))
    assert forged.status_code == 401
