"""config.verify checked at save time, public webhooks (warned about, rate limited per
path), and the credentials of presets kept out of every output."""

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from automation.definitions.webhook_config import keep_stored_secrets, redact_triggers
from automation.definitions.webhook_config import validate_webhook_config as check
from automation.models import Run
from automation.views.present import trigger_summary

pytestmark = pytest.mark.django_db

PATH = {"path": "/vendors/x"}
STANDARD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize("config", [
    {**PATH, "verify": "stripe", "secret": "whsec_abc"},
    {**PATH, "verify": {"preset": "stripe", "tolerance": 600}, "secret": "whsec_abc",
     "previousSecret": "whsec_old"},
    {**PATH, "verify": "github", "secret": "s", "validateSignature": True},
    {**PATH, "verify": "standard-webhooks", "secret": STANDARD},
    {**PATH, "verify": {"preset": "token", "header": "X-Gitlab-Token"}, "secret": "t"},
    {**PATH, "verify": {"preset": "hmac", "header": "X-Sig", "algorithm": "sha1",
                        "encoding": "base64", "prefix": "sha1=", "timestampHeader": "X-Time",
                        "tolerance": 60, "deliveryHeader": "X-Id"}, "secret": "s"},
    {**PATH, "verify": "entityflow", "secret": "s"},
    {**PATH, "public": True},
    {**PATH, "validateSignature": True, "secret": "s"},
])
def test_valid_configs(config):
    assert check(config) == {}


@pytest.mark.parametrize(("config", "errors"), [
    ({**PATH, "verify": "paypal", "secret": "s"},
     {"config.verify.preset": ["The preset must be one of entityflow, standard-webhooks, "
                               "stripe, github, shopify, slack, token, hmac."]}),
    ({**PATH, "verify": 7}, {"config.verify": [
        "verify must be a preset name (entityflow, standard-webhooks, stripe, github, shopify, "
        "slack, token, hmac) or an object with `preset` and its options."]}),
    ({**PATH, "verify": "stripe"},
     {"config.secret": ["A signed webhook needs the secret its sender signs with."]}),
    ({**PATH, "verify": {"preset": "github", "tolerance": 60}, "secret": "s"},
     {"config.verify.tolerance": ["Unknown option 'tolerance' for the github preset; it "
                                  "takes no options."]}),
    ({**PATH, "verify": {"preset": "stripe", "tolerance": 0}, "secret": "s"},
     {"config.verify.tolerance": ["tolerance must be a whole number of seconds from 1 to "
                                  "3600."]}),
    ({**PATH, "verify": "standard-webhooks", "secret": "not-a-whsec"},
     {"config.secret": ["A Standard Webhooks secret is whsec_ followed by base64, for "
                        "example whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw."]}),
    ({**PATH, "verify": {"preset": "token"}},
     {"config.verify.header": ["The token preset needs the header the sender puts it in."],
      "config.secret": ["A token webhook needs the token callers send, in config.secret."]}),
    ({**PATH, "verify": {"preset": "hmac", "header": "X Sig", "algorithm": "md5",
                         "encoding": "hex64", "signedPayload": "{ts}.{body}"}, "secret": "s"},
     {"config.verify.header": ["header must be an HTTP header name such as X-Signature."],
      "config.verify.algorithm": ["algorithm must be one of sha1, sha256, sha512."],
      "config.verify.encoding": ["encoding must be one of hex, base64."],
      "config.verify.signedPayload": ["signedPayload must hold {body} once and may hold "
                                      "{timestamp}; no other placeholders."]}),
    ({**PATH, "verify": {"preset": "hmac", "header": "X-Sig",
                         "signedPayload": "{timestamp}.{body}"}, "secret": "s"},
     {"config.verify.signedPayload": ["Use {timestamp} in signedPayload exactly when a "
                                      "timestampHeader is named: an unsigned timestamp "
                                      "proves nothing."]}),
    ({**PATH, "verify": "slack", "secret": "s", "previousSecret": ""},
     {"config.previousSecret": ["previousSecret must be a non-empty string (or left out)."]}),
    ({**PATH, "public": True, "verify": "github", "secret": "s"},
     {"config.public": ["A public webhook is not verified: remove public, or remove verify, "
                        "validateSignature and token."]}),
    ({**PATH, "public": "yes"}, {"config.public": ["public must be true or false."]}),
    ({**PATH, "verify": "github", "secret": "s", "validateSignature": False},
     {"config.validateSignature": ["validateSignature is false but config.verify asks for a "
                                   "signature; remove one of them."]}),
])
def test_field_errors(config, errors):
    assert check(config) == errors


def test_the_definitions_api_never_returns_signing_secrets():
    triggers = [{"type": "webhook", "config": {**PATH, "verify": "stripe", "secret": "new",
                                               "previousSecret": "old"}}]
    assert redact_triggers(triggers) == [{"type": "webhook",
                                          "config": {**PATH, "verify": "stripe"}}]
    sent_back = keep_stored_secrets(redact_triggers(triggers), triggers)
    assert sent_back == triggers
    ended = [{"type": "webhook", "config": {**PATH, "verify": "stripe", "previousSecret": None}}]
    assert keep_stored_secrets(ended, triggers)[0]["config"] == {
        **PATH, "verify": "stripe", "secret": "new"}


# --- public webhooks --------------------------------------------------------------------

PUBLIC = {"type": "webhook", "config": {"path": "/open/form", "public": True}}


def test_a_public_webhook_takes_anything_up_to_its_rate_per_path(save_process, settings):
    settings.ENTITYFLOW_WEBHOOK_PUBLIC_RATE = 2
    process = save_process("open-form", [PUBLIC])
    client = Client(enforce_csrf_checks=True)
    answers = [client.post("/hooks/open/form", json.dumps({"n": n}),
                           content_type="application/json") for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert 1 <= int(answers[2]["Retry-After"]) <= 60
    assert Run.objects.filter(process=process).count() == 2


def test_public_webhooks_are_marked_in_the_admin(admin_client, save_process):
    save_process("open-form", [PUBLIC])
    assert "public" in trigger_summary({"triggers": [PUBLIC]})
    assert "public" not in trigger_summary({"triggers": [
        {"type": "webhook", "config": {**PATH, "verify": "github", "secret": "s"}}]})
    listing = admin_client.get(reverse("admin:automation_apiprocess_changelist"))
    assert "⚠ public" in listing.content.decode()
    preview = admin_client.post(reverse("admin:automation_process_preview"), {
        "definition": json.dumps({"steps": [{"id": "a", "type": "function",
                                             "function": "noop"}], "triggers": [PUBLIC]})})
    assert "anyone who knows the URL" in preview.json()["steps"]
