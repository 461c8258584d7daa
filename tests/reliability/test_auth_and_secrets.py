"""Who may do what, and secrets that must never show: every API endpoint with an expired,
revoked or wrong-kind token; every admin page as a non-staff user; every admin POST
without a CSRF token; signed webhooks replayed outside (and inside) the tolerance; and
the API client secret, tokens, connection token and webhook secrets of a whole scenario
absent from every log line (DEBUG), run record and API response. Requests without any
token are covered in tests/api/test_api_unauthenticated.py (its URL walk is reused)."""

import json
import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from rest_framework.test import APIClient

from automation.api.urls import PUBLIC
from automation.connections.services import connection_create
from automation.models import ApiToken, InboundDelivery, Run, StepRun, WebhookDelivery
from automation.services.api_auth import token_hash, tokens_issue
from automation.services.processes import process_save
from entities.models import EntityEvent
from integrations import signing
from tests.api.test_api_unauthenticated import api_patterns
from tests.reliability.support import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

VERBS = ("get", "post", "put", "patch", "delete")


def every_call(client: APIClient):
    """(verb, path, response) for every operation of every non-public API endpoint."""
    for name, path, view in api_patterns():
        if name in PUBLIC:
            continue
        for verb in VERBS:
            if hasattr(view, verb):
                yield verb, path, getattr(client, verb)(path, {}, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.parametrize("kind", ["expired", "revoked", "refresh token", "deactivated client",
                                  "made up"])
def test_every_endpoint_refuses_a_token_that_is_not_a_live_access_token(client_and_secret, kind):
    client, _ = client_and_secret
    tokens = tokens_issue(client=client)
    access = ApiToken.objects.filter(token_hash=token_hash(tokens["accessToken"]))
    token = tokens["accessToken"]
    if kind == "expired":
        access.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif kind == "revoked":
        access.update(revoked=True)
    elif kind == "refresh token":
        token = tokens["refreshToken"]
    elif kind == "deactivated client":
        type(client).objects.filter(pk=client.pk).update(active=False)
    else:
        token = "eat_" + "A" * 43
    checked = 0
    for verb, path, response in every_call(bearer(token)):
        assert response.status_code == 401, (kind, verb, path, response.status_code)
        assert_error(response, 401, "unauthorized")
        checked += 1
    assert checked >= 35
    assert not Run.objects.exists()


# --- the admin ------------------------------------------------------------------------

DUMMY = {"int": "1", "path": "1", "str": "x", "slug": "x",
         "uuid": "00000000-0000-0000-0000-000000000001"}
PUBLIC_ADMIN = {"login", "logout", "view_on_site", "password_reset", "password_reset_done"}


def admin_paths() -> list[tuple[str, str]]:
    """(name, concrete path) of every admin URL, custom pages included."""
    found = []

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern) and isinstance(entry.pattern, RoutePattern):
                route = str(entry.pattern)
                for name, converter in entry.pattern.converters.items():
                    kind = type(converter).__name__.removesuffix("Converter").lower()
                    for prefix_name in ("int", "path", "str", "slug", "uuid"):
                        route = route.replace(f"<{prefix_name}:{name}>", DUMMY.get(kind, "1"))
                found.append((entry.name or route, prefix + route))
            else:  # the app index (a regex of app labels) and the catch-all
                found.append((entry.name or "regex", prefix + "automation/"))

    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and str(entry.pattern) == "admin/":
            walk(entry.url_patterns, "/admin/")
    return found


def test_every_admin_page_refuses_anonymous_and_non_staff_users():
    outsider = get_user_model().objects.create_user("outsider", password="pw-123456789")
    logged_in = Client(raise_request_exception=False)
    logged_in.force_login(outsider)
    pages = [(name, path) for name, path in admin_paths() if name not in PUBLIC_ADMIN]
    assert len(pages) >= 40 and any("preview" in path for _, path in pages)
    for who, client in (("anonymous", Client(raise_request_exception=False)),
                        ("non-staff", logged_in)):
        for name, path in pages:
            response = client.get(path)
            assert response.status_code in (302, 403, 404), (who, name, path,
                                                             response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/admin/login/"), (who, path)


def table_counts() -> dict:
    from django.apps import apps

    return {m._meta.label: m.objects.count() for m in apps.get_models()
            if issubclass(m, Model) and m._meta.app_label in ("automation", "entities", "auth")}


def test_every_admin_post_without_a_csrf_token_is_refused():
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-123456789")
    strict = Client(enforce_csrf_checks=True, raise_request_exception=False)
    strict.force_login(admin)
    before = table_counts()
    posted = 0
    for name, path in admin_paths():
        if name in ("view_on_site",):
            continue
        response = strict.post(path, {"name": "x", "action": "delete_selected",
                                      "_selected_action": ["1"], "post": "yes"})
        assert response.status_code == 403, (name, path, response.status_code)
        assert b"CSRF" in response.content, (name, path)
        posted += 1
    assert posted >= 40
    assert table_counts() == before
    # Control: the same client with the token gets past the check.
    strict.get("/admin/")
    token = strict.cookies["csrftoken"].value
    assert strict.post("/admin/logout/", {"csrfmiddlewaretoken": token}).status_code != 403


# --- signed webhooks ---------------------------------------------------------------------

WEBHOOK_SECRET = "whsec_reliability_Zk3mQ9"


@pytest.fixture
def signed_hook():
    return process_save(slug="signed", name="Signed", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "webhook", "config": {"path": "/signed/in", "validateSignature": True,
                                                    "secret": WEBHOOK_SECRET}}]})


def send(raw: bytes, header: str, delivery: str = "d-1"):
    return Client().post("/hooks/signed/in", raw, content_type="application/json",
                         headers={"X-Entityflow-Signature": header,
                                  "X-Entityflow-Delivery": delivery})


class _Later:
    """time, seconds later."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def time(self) -> float:
        return time.time() + self.seconds


def test_a_signature_from_the_future_beyond_the_tolerance_is_refused(signed_hook):
    raw = b'{"n": 1}'
    answer = send(raw, signing.sign(WEBHOOK_SECRET, raw, int(time.time()) + 360))
    assert_error(answer, 401, "invalid_signature")
    assert not Run.objects.exists() and not InboundDelivery.objects.exists()


def test_a_captured_request_replayed_after_the_tolerance_is_refused(signed_hook, monkeypatch):
    raw = b'{"n": 2}'
    header = signing.sign(WEBHOOK_SECRET, raw)
    assert send(raw, header, "d-2").status_code == 202
    monkeypatch.setattr(signing, "time", _Later(301))
    assert_error(send(raw, header, "d-3"), 401, "invalid_signature")
    assert Run.objects.count() == 1


def test_a_captured_request_replayed_within_the_tolerance_starts_nothing_new(signed_hook):
    raw = b'{"n": 3}'
    header = signing.sign(WEBHOOK_SECRET, raw)
    assert send(raw, header, "d-4").status_code == 202
    replay = send(raw, header, "d-5-forged")
    assert replay.status_code in (200, 401, 409), replay.content
    assert Run.objects.count() == 1


# --- secrets ---------------------------------------------------------------------------

CONNECTION_TOKEN = "conn_tok_reliability_7Hq2x"
SUBSCRIPTION_SECRET = "whsec_subscription_reliability_9Pz"
HOOK_TOKEN = "tok_inbound_reliability_0123456789"


def scenario(api_key: str, api_secret: str, responses: list) -> dict:
    """Authorize, refresh, define, trigger, publish, receive webhooks, fail a login."""
    anon = APIClient(raise_request_exception=False)
    wrong = {"key": api_key, "secret": "wrong" + api_secret}
    responses.append(anon.post("/api/auth/authorize", wrong, format="json"))
    first = anon.post("/api/auth/authorize", {"key": api_key, "secret": api_secret}, format="json")
    tokens = first.json()
    refreshed = anon.post("/api/auth/refresh", {"refreshToken": tokens["refreshToken"]},
                          format="json").json()
    responses.append(anon.post("/api/auth/refresh", {"refreshToken": tokens["refreshToken"]},
                               format="json"))  # spent: 401
    api = bearer(refreshed["accessToken"])
    connection_create(provider="http", name="partner", base_url="https://partner.invalid",
                      credentials={"token": CONNECTION_TOKEN})
    calls = [
        ("post", "/api/webhooks", {"url": "https://hooks.invalid/entityflow", "events": ["*"],
                                   "secret": SUBSCRIPTION_SECRET}),
        ("post", "/api/functions", {"name": "call-partner", "action": "http.request",
                                    "connection": "partner", "config": {"url": "/orders"}}),
        ("post", "/api/workflow-definitions", {"id": "inbound", "name": "Inbound", "steps": [
            {"id": "a", "type": "function", "function": "noop"}], "triggers": [
            {"type": "webhook", "config": {"path": "/in/signed", "validateSignature": True,
                                           "secret": WEBHOOK_SECRET}},
            {"type": "webhook", "config": {"path": "/in/token", "token": HOOK_TOKEN}}]}),
        ("post", "/api/workflow-definitions/inbound/trigger", {"input": {"n": 1}}),
        ("post", "/api/events", {"type": "partner.ping", "data": {"n": 1}}),
        ("get", "/api/workflow-definitions", None), ("get", "/api/functions", None),
        ("get", "/api/webhooks", None), ("get", "/api/runs", None),
    ]
    for verb, path, body in calls:
        responses.append(getattr(api, verb)(path, body, format="json"))
    hooks = Client(raise_request_exception=False)
    signed, tokened = b'{"via": "signature"}', b'{"via": "token"}'
    responses += [
        hooks.post("/hooks/in/signed", signed, content_type="application/json",
                   headers={"X-Entityflow-Signature": signing.sign(WEBHOOK_SECRET, signed)}),
        hooks.post("/hooks/in/signed", signed, content_type="application/json",
                   headers={"X-Entityflow-Signature": signing.sign("whsec_wrong_0", signed)}),
        hooks.post(f"/hooks/in/token?token={HOOK_TOKEN}", tokened,
                   content_type="application/json"),
        hooks.post("/hooks/in/token?token=wrong-token-0123456789", tokened,
                   content_type="application/json"),
    ]
    for run in Run.objects.all():
        responses.append(api.get(f"/api/executions/{run.pk}?expand=steps"))
    return {"tokens": tokens, "refreshed": refreshed}


def records() -> str:
    return json.dumps([list(Run.objects.values()), list(StepRun.objects.values()),
                       list(EntityEvent.objects.values()), list(WebhookDelivery.objects.values()),
                       list(InboundDelivery.objects.values())], default=str)


def test_api_secrets_and_tokens_never_reach_logs_records_or_responses(client_and_secret, caplog):
    caplog.set_level(logging.DEBUG)
    client, api_secret = client_and_secret
    responses: list = []
    issued = scenario(client.key, api_secret, responses)
    assert Run.objects.filter(trigger__type="webhook").count() == 2
    logged = caplog.text + "\n".join(f"{r.getMessage()} {r.args} {r.exc_text or ''}"
                                     for r in caplog.records)
    secrets = {"API client secret": api_secret, "connection token": CONNECTION_TOKEN,
               "subscription secret": SUBSCRIPTION_SECRET,
               "access token": issued["tokens"]["accessToken"],
               "refresh token": issued["tokens"]["refreshToken"],
               "new access token": issued["refreshed"]["accessToken"]}
    answers = "\n".join(r.content.decode() for r in responses)
    stored = records()
    for label, secret in secrets.items():
        assert secret not in logged, f"{label} in the logs"
        assert secret not in stored, f"{label} in a run record"
        assert secret not in answers, f"{label} in an API response"
    for label, secret in (("webhook secret", WEBHOOK_SECRET), ("webhook token", HOOK_TOKEN)):
        assert secret not in logged, f"{label} in the logs"
        assert secret not in stored, f"{label} in a run record"
    assert all(r.status_code < 500 for r in responses)


def test_inbound_webhook_secrets_never_come_back_from_the_api(client_and_secret):
    client, api_secret = client_and_secret
    responses: list = []
    scenario(client.key, api_secret, responses)
    answers = "\n".join(r.content.decode() for r in responses)
    assert WEBHOOK_SECRET not in answers and HOOK_TOKEN not in answers
