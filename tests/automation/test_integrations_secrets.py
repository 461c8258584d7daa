"""Secrets at rest and in history: encryption of credentials and signing secrets, and one
scenario that touches every integration and then looks for the raw secrets everywhere
the product writes or shows something (run history, delivery log, logs, API, admin)."""

import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from automation.api.services import function_save
from automation.connections import secrets
from automation.connections.services import (
    connection_create,
    connection_credentials,
    connection_test,
    connection_update,
)
from automation.models import Connection, Run, StepRun, WebhookDelivery, WebhookSubscription
from automation.services.agents import agent_save
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.services.webhooks import deliveries_due_sweep, webhook_subscription_create
from entities.models import EntityEvent, ExternalLink
from entities.services import entity_create
from tests.integrations.fakes.dropbox import FakeDropbox
from tests.integrations.fakes.echo import EchoServer
from tests.integrations.fakes.hubspot import FakeHubSpot
from tests.integrations.fakes.openai import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

HUBSPOT_TOKEN = "pat-na1-scan0000-1111-2222-3333-444444444444"
HUBSPOT_WRONG = "pat-na1-scan9999-wrong-wrong-wrong-00000000"
HTTP_TOKEN = "http-scan-token-8d7c6b5a4f3e"
HTTP_PASSWORD = "http-scan-password-0a1b2c"
WEBHOOK_STEP_SECRET = "whsec-step-scan-5e6f7a8b9c"
SUBSCRIPTION_SECRET = "whsec-sub-scan-1a2b3c4d5e"
OPENAI_KEY = "sk-scan-0123456789abcdefghijklmnop"
ORDER = {"customer": {"name": "Ada Lovelace"}, "total": 1500.5}


# -- encryption ----------------------------------------------------------------------

def test_json_round_trip_and_nothing_readable_at_rest():
    token = secrets.encrypt_json({"accessToken": "pat-na1-plain"})
    assert "pat-na1-plain" not in token and "accessToken" not in token
    assert secrets.decrypt_json(token) == {"accessToken": "pat-na1-plain"}
    assert secrets.encrypt_json({}) == "" and secrets.decrypt_json("") == {}
    assert secrets.decrypt_text(secrets.encrypt_text("å secret")) == "å secret"


def test_key_is_derived_from_secret_key_when_not_configured(settings):
    settings.ENTITYFLOW_ENCRYPTION_KEY = ""
    token = secrets.encrypt_text("x")
    assert Fernet(secrets.derive_key(settings.SECRET_KEY)).decrypt(token.encode()) == b"x"
    settings.SECRET_KEY = "another-secret-key-" + "z" * 40
    with pytest.raises(secrets.SecretDecryptError) as caught:
        secrets.decrypt_text(token)
    assert "ENTITYFLOW_ENCRYPTION_KEY" in caught.value.message


def test_configured_key_and_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENTITYFLOW_ENCRYPTION_KEY = old
    written_with_old = secrets.encrypt_text("rotate me")
    assert Fernet(old.encode()).decrypt(written_with_old.encode()) == b"rotate me"

    settings.ENTITYFLOW_ENCRYPTION_KEY = f"{new},{old}"
    assert secrets.decrypt_text(written_with_old) == "rotate me"
    assert Fernet(new.encode()).decrypt(secrets.encrypt_text("y").encode()) == b"y"


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.ENTITYFLOW_ENCRYPTION_KEY = "not-a-fernet-key"
    with pytest.raises(ImproperlyConfigured, match="Fernet key"):
        secrets.encrypt_text("x")


def test_connection_update_replaces_credentials_encrypted():
    connection = connection_create(provider="http", name="svc", credentials={"token": "old-tok-1"})
    connection_update(connection=connection, credentials={"token": "new-tok-2"},
                      base_url="https://api.example.com")
    stored = Connection.objects.get(pk=connection.pk)
    assert "new-tok-2" not in stored.credentials_encrypted
    assert connection_credentials(stored) == {"token": "new-tok-2"}
    assert stored.base_url == "https://api.example.com"


def test_unknown_provider_is_refused():
    from automation.connections.services import ConnectionInvalidError

    with pytest.raises(ConnectionInvalidError) as caught:
        connection_create(provider="salesforce", name="sf", credentials={})
    assert "provider" in caught.value.fields


def test_each_provider_checks_its_credentials():
    from automation.connections.services import ConnectionInvalidError

    with pytest.raises(ConnectionInvalidError) as hubspot:
        connection_create(provider="hubspot", name="hs", credentials={"accessToken": ""})
    with pytest.raises(ConnectionInvalidError) as dropbox:
        connection_create(provider="dropbox", name="box", credentials={"refreshToken": "r-123456"})
    with pytest.raises(ConnectionInvalidError) as http:
        connection_create(provider="http", name="api", credentials={"type": "apiKey"})

    assert hubspot.value.fields == {"credentials.accessToken": ["Access token is required."]}
    assert set(dropbox.value.fields) == {"credentials.appKey", "credentials.appSecret"}
    assert http.value.message == ("credentials.apiKey: API key is required for apiKey "
                                  "authentication.")
    assert "r-123456" not in str(dropbox.value.fields) and not Connection.objects.exists()
    draft = connection_create(provider="dropbox", name="later", credentials={})  # none yet
    ok, message = connection_test(draft)
    assert not ok and message == "The Dropbox connection has no accessToken."


def test_credentials_changes_keep_what_is_not_named():
    from automation.connections.services import (
        ConnectionInvalidError,
        connection_credentials_present,
    )

    connection = connection_create(provider="dropbox", name="box", credentials={
        "accessToken": "sl.old-access", "refreshToken": "refresh-1", "appKey": "key-1",
        "appSecret": "secret-1"})

    connection_update(connection=connection, credentials_changes={"accessToken": "sl.new-access"})
    assert connection_credentials(Connection.objects.get(pk=connection.pk)) == {
        "accessToken": "sl.new-access", "refreshToken": "refresh-1", "appKey": "key-1",
        "appSecret": "secret-1"}
    with pytest.raises(ConnectionInvalidError):  # the merged set must still be usable
        connection_update(connection=connection, credentials_changes={"appSecret": None})
    assert connection_credentials_present(Connection.objects.get(pk=connection.pk)) == {
        "accessToken": True, "refreshToken": True, "appKey": True, "appSecret": True}


def test_a_connection_that_cannot_be_decrypted_fails_its_step_clearly(order_type):
    connection = connection_create(provider="hubspot", name="hs", credentials={"accessToken": "t"})
    Connection.objects.filter(pk=connection.pk).update(credentials_encrypted="garbage")
    process = process_save(slug="p", name="P", definition={"steps": [
        {"id": "a", "type": "function", "function": "hubspot.upsert_contact",
         "config": {"retries": 2, "params": {"email": "a@example.com"}}}]})

    run, _ = run_start(process=process, trigger={"type": "manual"})

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.error["code"] == "secret_unreadable"
    assert "hs" in run.error["message"] and StepRun.objects.get(run=run).attempt == 1


# -- the scan ------------------------------------------------------------------------

@pytest.fixture
def fakes():
    servers = {"hubspot": FakeHubSpot(token=HUBSPOT_TOKEN), "dropbox": FakeDropbox(),
               "echo": EchoServer(), "openai": FakeOpenAI(api_key=OPENAI_KEY)}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def _connections(fakes) -> None:
    hub, box, echo, ai = fakes["hubspot"], fakes["dropbox"], fakes["echo"], fakes["openai"]
    connection_create(provider="hubspot", name="hubspot", base_url=hub.url,
                      credentials={"accessToken": HUBSPOT_TOKEN})
    connection_create(provider="hubspot", name="hubspot-wrong", base_url=hub.url,
                      credentials={"accessToken": HUBSPOT_WRONG})
    connection_create(provider="dropbox", name="dropbox", base_url=box.url,
                      options={"contentBaseUrl": box.content_url},
                      credentials={"accessToken": box.access_token,
                                   "refreshToken": box.refresh_token,
                                   "appKey": box.app_key, "appSecret": box.app_secret})
    connection_create(provider="http", name="api-bearer", base_url=echo.url,
                      credentials={"token": HTTP_TOKEN})
    connection_create(provider="http", name="api-basic", base_url=echo.url,
                      credentials={"username": "svc", "password": HTTP_PASSWORD})
    connection_create(provider="webhook", name="hook", base_url=f"{echo.url}/hook",
                      credentials={"secret": WEBHOOK_STEP_SECRET})
    connection_create(provider="openai", name="llm", base_url=ai.base_url,
                      credentials={"apiKey": OPENAI_KEY}, options={"model": "gpt-4o-mini"})


def _functions() -> None:
    def save(name, action, connection, **config):
        function_save(name=name, action=action, config=config,
                      connection=Connection.objects.get(name=connection))

    save("deal", "hubspot.upsert_deal", "hubspot", dealname="Order {{ entity.reference }}",
         properties={"amount": "{{ entity.data.total }}", "dealstage": "appointmentscheduled"})
    save("deal-wrong", "hubspot.upsert_deal", "hubspot-wrong", dealname="x")
    save("upload", "dropbox.upload_file", "dropbox", path="/o/{{ entity.reference }}.json",
         content="entity.json")
    save("echo-bearer", "http.request", "api-bearer", url="/echo", method="POST",
         json={"ref": "{{ entity.reference }}"})
    save("echo-basic", "http.request", "api-basic", url="/echo")
    save("echo-500", "http.request", "api-bearer", url="/status/500")
    save("hook", "webhook.post", "hook", payload={"ref": "{{ entity.reference }}"})


def _process(slug: str, *steps: dict) -> object:
    chained = [{**s, "next": steps[i + 1]["id"]} if i + 1 < len(steps) else s
               for i, s in enumerate(steps)]
    return process_save(slug=slug, name=slug, definition={"steps": chained})


def _fn(step_id: str, function: str | None = None) -> dict:
    return {"id": step_id, "type": "function", "function": function or step_id}


def _scenario(fakes, order_type) -> list[Run]:
    _connections(fakes)
    _functions()
    agent_save(key="summariser", instructions="Summarise the order as JSON.",
               connection=Connection.objects.get(name="llm"))
    webhook_subscription_create(url=f"{fakes['echo'].url}/subscriber", events=["*"],
                                secret=SUBSCRIPTION_SECRET)
    fakes["dropbox"].expire()  # the upload refreshes the token first
    fakes["echo"].script(500, "try later", times=1, path="/subscriber",
                         content_type="text/plain")
    order = entity_create(entity_type=order_type, reference="ORD-S", data=ORDER)
    good = _process("good", _fn("deal"), _fn("upload"), _fn("echo-bearer"), _fn("echo-basic"),
                    _fn("hook"), {"id": "agent", "type": "agent",
                                  "config": {"agentRole": "summariser"}})
    processes = (good, _process("wrong-token", _fn("deal-wrong")),
                 _process("server-error", _fn("echo-500")))
    runs = [run_start(process=p, trigger={"type": "manual"}, entity=order)[0] for p in processes]
    for connection in Connection.objects.all():
        connection_test(connection)
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    assert deliveries_due_sweep() == 1
    return [Run.objects.get(pk=run.pk) for run in runs]


def _api_and_admin_pages(runs: list[Run], django_user_model) -> str:
    client = Client()
    client.force_login(django_user_model.objects.create_user("staff", password="x",
                                                             is_staff=True, is_superuser=True))
    pages = [f"/api/executions/{run.pk}?expand=steps" for run in runs]
    pages += ["/api/runs", "/api/functions", "/api/webhooks"]
    pages += [f"/admin/automation/connection/{c.pk}/change/" for c in Connection.objects.all()]
    pages += ["/admin/automation/connection/", "/admin/automation/webhookdelivery/",
              "/admin/automation/webhooksubscription/"]
    texts = []
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        texts.append(response.content.decode())
    return "\n".join(texts)


def test_no_raw_secret_is_written_or_shown_anywhere(fakes, order_type, caplog,
                                                    django_user_model):
    caplog.set_level(logging.DEBUG)
    good, wrong, server_error = _scenario(fakes, order_type)

    assert good.status == Run.Status.COMPLETED, good.error
    assert wrong.status == server_error.status == Run.Status.FAILED
    assert "401" in wrong.error["message"] and "500" in server_error.error["message"]
    echoed = StepRun.objects.get(run=good, step_id="echo-bearer").output["body"]["headers"]
    assert echoed["Authorization"] == "Bearer [redacted]"  # the server did echo it
    agent = StepRun.objects.get(run=good, step_id="agent")
    assert agent.status == StepRun.Status.COMPLETED and "echo" in agent.output
    deliveries = list(WebhookDelivery.objects.all())
    assert {d.status for d in deliveries} == {WebhookDelivery.Status.DELIVERED}
    assert sum(d.attempts for d in deliveries) == len(deliveries) + 1

    raw = [HUBSPOT_TOKEN, HUBSPOT_WRONG, HTTP_TOKEN, HTTP_PASSWORD, WEBHOOK_STEP_SECRET,
           SUBSCRIPTION_SECRET, OPENAI_KEY, fakes["dropbox"].access_token,
           "sl.u.initial-access-token-0001", fakes["dropbox"].refresh_token,
           fakes["dropbox"].app_secret]
    written = json.dumps([
        list(Run.objects.values()), list(StepRun.objects.values()),
        list(WebhookDelivery.objects.values()),
        list(WebhookSubscription.objects.values("url", "events", "owner")),
        list(Connection.objects.values("name", "base_url", "options", "last_test_message")),
        list(ExternalLink.objects.values()), list(EntityEvent.objects.values()),
    ], default=str)
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    shown = _api_and_admin_pages([good, wrong, server_error], django_user_model)
    stored_encrypted = "".join(Connection.objects.values_list("credentials_encrypted", flat=True))
    for secret in raw:
        for where, text in (("history", written), ("logs", logged), ("pages", shown),
                            ("credentials_encrypted", stored_encrypted)):
            assert secret not in text, f"{secret[:8]}… found in {where}"
