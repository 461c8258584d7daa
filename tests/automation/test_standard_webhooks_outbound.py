"""Our outbound deliveries carry the Standard Webhooks headers next to
X-Entityflow-Signature; a receiver verifies them with the `standardwebhooks` package, as
docs/user-guide/integrations.md tells receivers to."""

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from automation.models import WebhookDelivery
from automation.services import webhooks
from automation.services.processes import process_save
from automation.services.runs import run_start
from integrations.signing import verify
from integrations.webhook import webhook_post
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    server = EchoServer().start()
    yield server
    server.stop()


def lower(headers: dict) -> dict:
    return {name.lower(): value for name, value in headers.items()}


def receiver_key(secret: str) -> str | bytes:
    """What a receiver hands the package (docs/user-guide/integrations.md)."""
    return secret if secret.startswith("whsec_") else secret.encode()


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "a-plain-subscription-secret"])
def test_a_run_end_delivery_verifies_with_the_standardwebhooks_package(receiver, secret):
    webhooks.webhook_subscription_create(url=f"{receiver.url}/in", secret=secret,
                                         events=["workflow.completed"], owner="tests")
    process = process_save(slug="notify", name="Notify", definition={
        "steps": [{"id": "only", "type": "function", "function": "noop"}]})
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={})

    delivery = WebhookDelivery.objects.get()
    [call] = receiver.calls
    headers = lower(call.headers)
    payload = Webhook(receiver_key(secret)).verify(call.body, headers)
    assert payload["event"] == "workflow.completed" and payload["id"] == str(run.pk)
    assert headers["webhook-id"] == headers["x-entityflow-delivery"] == str(delivery.pk)
    stamp = headers["x-entityflow-signature"].split(",")[0].removeprefix("t=")
    assert headers["webhook-timestamp"] == stamp
    verify(secret, call.body, headers["x-entityflow-signature"])
    with pytest.raises(WebhookVerificationError):
        Webhook(b"another-secret").verify(call.body, headers)


def test_a_tampered_or_replayed_delivery_fails_the_packages_check(receiver):
    secret = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="
    webhook_post(f"{receiver.url}/in", {"event": "ping"}, secret, delivery_id="d-1")
    [call] = receiver.calls
    headers = lower(call.headers)
    Webhook(secret).verify(call.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(call.body.replace(b"ping", b"pong"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(call.body, {**headers, "webhook-id": "d-2"})


def test_every_retry_keeps_the_webhook_id(receiver):
    receiver.script(500, {"error": "down"}, times=1)
    webhooks.webhook_subscription_create(url=f"{receiver.url}/in", secret="s3cret-value",
                                         events=["workflow.completed"], owner="tests")
    process = process_save(slug="notify", name="Notify", definition={
        "steps": [{"id": "only", "type": "function", "function": "noop"}]})
    run_start(process=process, trigger={"type": "manual"}, input={})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    webhooks.delivery_attempt(delivery_id=delivery.pk)
    ids = [lower(call.headers)["webhook-id"] for call in receiver.calls]
    assert ids == [str(delivery.pk)] * 2
