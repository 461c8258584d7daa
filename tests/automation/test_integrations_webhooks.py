"""Outbound webhooks: `workflow.completed` / `workflow.failed` POSTed signed to a
loopback receiver, retried with backoff by the sweeper, given up after 3 days."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from automation.connections.secrets import SecretDecryptError
from automation.models import Run, WebhookDelivery, WebhookSubscription
from automation.services import webhooks
from automation.services.notifications import notify
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.tasks_webhooks import deliver
from integrations.exceptions import SignatureError
from integrations.signing import verify
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_subscriber_0123456789abcdef"


@pytest.fixture
def receiver():
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture
def subscription(receiver):
    return webhooks.webhook_subscription_create(
        url=f"{receiver.url}/entityflow", events=["workflow.completed", "workflow.failed"],
        secret=SECRET, owner="tests")


def finish_a_run(*, fail: bool = False) -> Run:
    step = {"id": "only", "type": "function", "function": "test.boom" if fail else "noop"}
    process = process_save(slug="notify", name="Notify", definition={"steps": [step]})
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    run.refresh_from_db()
    return run


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_completed_run_is_delivered_signed_with_the_delivery_id(receiver, subscription):
    run = finish_a_run()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    [call] = receiver.calls
    assert call.path == "/entityflow"
    verify(SECRET, call.body, call.headers["X-Entityflow-Signature"])
    with pytest.raises(SignatureError):
        verify("another-secret", call.body, call.headers["X-Entityflow-Signature"])
    assert call.headers["X-Entityflow-Delivery"] == str(delivery.pk)
    assert call.headers["X-Entityflow-Event"] == "workflow.completed"
    body = call.json()
    assert body["event"] == "workflow.completed" and body["id"] == str(run.pk)
    assert body["status"] == "completed" and body["workflowDefinitionId"] == "notify"


def test_failed_run_sends_workflow_failed(receiver, subscription):
    run = finish_a_run(fail=True)

    assert run.status == Run.Status.FAILED
    assert receiver.calls[0].json()["event"] == "workflow.failed"


def test_failing_receiver_is_retried_until_it_accepts(receiver, subscription):
    receiver.script(500, {"error": "database down"}, times=2)
    finish_a_run()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts == 1 and delivery.last_status_code == 500
    assert delivery.last_error.startswith("attempt 1:") and "500" in delivery.last_error
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 10 < wait <= 30  # 30 s base with jitter

    assert webhooks.deliveries_due_sweep() == 0  # not due yet: nothing is sent
    make_due(delivery)
    assert webhooks.deliveries_due_sweep() == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (2, 500)
    assert delivery.last_error.startswith("attempt 2:")
    assert 20 < (delivery.next_attempt_at - timezone.now()).total_seconds() <= 60  # doubled

    make_due(delivery)
    webhooks.deliveries_due_sweep()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (3, 200, "")
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert len(receiver.calls) == 3
    assert {c.headers["X-Entityflow-Delivery"] for c in receiver.calls} == {str(delivery.pk)}
    for call in receiver.calls:
        verify(SECRET, call.body, call.headers["X-Entityflow-Signature"])


def test_gives_up_once_the_first_attempt_is_three_days_old(receiver, subscription):
    receiver.script(503, "unavailable", times=5, content_type="text/plain")
    finish_a_run()
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(days=3, minutes=1))
    make_due(delivery)

    webhooks.deliveries_due_sweep()

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 2 and delivery.last_status_code == 503
    assert "gave up" in delivery.last_error and delivery.next_attempt_at is None
    make_due(delivery)
    assert webhooks.deliveries_due_sweep() == 0


def test_retries_never_go_past_the_three_day_window(receiver, subscription):
    receiver.script(500, {}, times=1)
    finish_a_run()
    delivery = WebhookDelivery.objects.get()
    assert delivery.next_attempt_at <= delivery.created_at + timedelta(days=3)
    assert webhooks.retry_backoff_seconds(30) <= 6 * 3600


def test_a_second_task_for_a_delivered_delivery_sends_nothing(receiver, subscription):
    finish_a_run()
    delivery = WebhookDelivery.objects.get()

    deliver(str(delivery.pk))
    webhooks.delivery_enqueue(delivery.pk)

    assert len(receiver.calls) == 1


def test_a_delivery_whose_task_was_lost_is_sent_by_the_sweeper(receiver, subscription):
    delivery = WebhookDelivery.objects.create(subscription=subscription, event="workflow.completed",
                                              payload={"event": "workflow.completed"})
    assert webhooks.deliveries_due_sweep() == 0  # its task may still be on the way
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(minutes=5))

    assert webhooks.deliveries_due_sweep() == 1

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED and len(receiver.calls) == 1


def test_async_mode_enqueues_a_task_that_delivers(receiver, subscription, settings):
    from django_q.models import OrmQ

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    if "orm" not in settings.Q_CLUSTER:
        pytest.skip("the ORM broker is what this test reads")
    webhooks._broker.cache_clear()
    with transaction.atomic():
        [delivery] = notify("workflow.completed", {"event": "workflow.completed"})

    assert delivery.status == WebhookDelivery.Status.PENDING and not receiver.calls
    [queued] = [task for task in OrmQ.objects.all() if task.func() == webhooks.TASK]
    assert queued.task["args"] == (str(delivery.pk),)

    deliver(*queued.task["args"])

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    webhooks._broker.cache_clear()


def test_inactive_subscription_is_not_sent(receiver, subscription):
    delivery = WebhookDelivery.objects.create(subscription=subscription, event="workflow.completed",
                                              payload={})
    WebhookSubscription.objects.filter(pk=subscription.pk).update(active=False)

    webhooks.delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED and delivery.attempts == 0
    assert not receiver.calls


def test_blocked_receiver_address_is_recorded_and_retried(subscription, settings):
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = []
    finish_a_run()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.attempts == 1
    assert delivery.last_status_code is None and "loopback" in delivery.last_error


def test_subscription_secret_is_encrypted_at_rest(subscription):
    stored = WebhookSubscription.objects.values_list("secret_encrypted", flat=True).get()
    assert SECRET not in stored
    assert webhooks.subscription_secret(subscription) == SECRET


def test_unreadable_secret_is_a_recorded_failure_not_a_crash(receiver, subscription):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(secret_encrypted="garbage")
    subscription.refresh_from_db()
    with pytest.raises(SecretDecryptError):
        webhooks.subscription_secret(subscription)

    run = finish_a_run()

    assert run.status == Run.Status.COMPLETED
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING and "decrypted" in delivery.last_error
    assert not receiver.calls


def test_subscription_needs_events_and_a_secret(receiver):
    with pytest.raises(webhooks.WebhookSubscriptionInvalidError) as no_events:
        webhooks.webhook_subscription_create(url=receiver.url, events=[], secret=SECRET)
    with pytest.raises(webhooks.WebhookSubscriptionInvalidError) as no_secret:
        webhooks.webhook_subscription_create(url=receiver.url, events=["*"], secret="")
    assert "events" in no_events.value.fields and "secret" in no_secret.value.fields


def test_a_human_step_delivers_approval_requested_signed(receiver):
    from automation.models import ApprovalRequest

    approvals = webhooks.webhook_subscription_create(
        url=f"{receiver.url}/approvals", events=["approval.requested"], secret=SECRET)
    webhooks.webhook_subscription_create(  # not subscribed to approvals: gets nothing
        url=f"{receiver.url}/runs", events=["workflow.completed"], secret="whsec_other_123456")
    process = process_save(slug="needs-approval", name="Needs approval", definition={"steps": [
        {"id": "approve", "type": "human",
         "config": {"approvers": ["manager@example.com"], "timeout": 86_400_000}}]})

    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"total": 12000})

    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    approval = ApprovalRequest.objects.get(run=run)
    [call] = receiver.calls
    assert call.path == "/approvals"
    verify(SECRET, call.body, call.headers["X-Entityflow-Signature"])
    delivery = WebhookDelivery.objects.get()
    assert delivery.subscription == approvals and delivery.event == "approval.requested"
    assert delivery.status == WebhookDelivery.Status.DELIVERED and delivery.attempts == 1
    assert call.headers["X-Entityflow-Delivery"] == str(delivery.pk)
    assert call.headers["X-Entityflow-Event"] == "approval.requested"
    body = call.json()
    assert body["event"] == "approval.requested" and body["id"] == str(approval.pk)
    assert body["executionId"] == str(run.pk) and body["step"] == "approve"
    assert body["approvers"] == ["manager@example.com"]
    assert body["deadline"] == approval.deadline.isoformat()


def test_approval_requested_to_a_failing_receiver_is_retried(receiver):
    receiver.script(502, "bad gateway", times=1, content_type="text/plain")
    webhooks.webhook_subscription_create(url=f"{receiver.url}/approvals",
                                         events=["approval.requested"], secret=SECRET)
    process = process_save(slug="needs-approval", name="Needs approval", definition={"steps": [
        {"id": "approve", "type": "human", "config": {"approvers": ["group:managers"]}}]})

    run_start(process=process, trigger={"type": "manual"})

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.last_status_code == 502
    make_due(delivery)
    webhooks.deliveries_due_sweep()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED and delivery.attempts == 2
    assert [c.json()["event"] for c in receiver.calls[1:]] == ["approval.requested"]
    for call in receiver.calls:
        verify(SECRET, call.body, call.headers["X-Entityflow-Signature"])
