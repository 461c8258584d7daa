"""Outbound webhooks: each delivery is a signed JSON POST, retried for up to 3 days.

A delivery row is written with the event (services.notifications) and sent after
commit. The row is the truth, as for steps: a send first claims the row with a
conditional UPDATE, so a redelivered task or an overlapping sweep never sends one
delivery twice at the same moment, and a send whose worker died is picked up again by
`deliveries_due_sweep` once its claim has expired. Every attempt carries the delivery's
id in `X-Entityflow-Delivery`, so receivers can drop the duplicates a retry may cause.
"""

import logging
import random
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import integrations.tracing as tracing
from automation.connections import secrets
from automation.exceptions import AutomationError
from automation.models import WebhookDelivery, WebhookSubscription
from integrations.exceptions import ConnectorError
from integrations.webhook import webhook_post

logger = logging.getLogger(__name__)

TASK = "automation.tasks_webhooks.deliver"
ERROR_MAX = 500


class WebhookSubscriptionInvalidError(AutomationError):
    code = "invalid_webhook_subscription"
    http_status = 422
    default_message = "The webhook subscription is not valid."


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, f"ENTITYFLOW_WEBHOOK_{name}", default))


# -- subscriptions -------------------------------------------------------------------

@transaction.atomic
def webhook_subscription_create(*, url: str, events: list[str], secret: str,
                                owner: str = "") -> WebhookSubscription:
    """A subscription whose signing secret is stored encrypted."""
    if not isinstance(events, list) or not events or \
            not all(isinstance(e, str) and e for e in events):
        raise WebhookSubscriptionInvalidError(
            "Give at least one event.", fields={"events": ["Give at least one event."]})
    if not isinstance(secret, str) or not secret:
        raise WebhookSubscriptionInvalidError(
            "A signing secret is required.", fields={"secret": ["A signing secret is required."]})
    subscription = WebhookSubscription(url=url, events=events, owner=owner,
                                       secret_encrypted=secrets.encrypt_text(secret))
    subscription.full_clean()
    subscription.save()
    return subscription


def subscription_secret(subscription: WebhookSubscription) -> str:
    """The decrypted signing secret. Callers must not log or return it."""
    return secrets.decrypt_text(subscription.secret_encrypted)


# -- sending -------------------------------------------------------------------------

def delivery_enqueue(delivery_id) -> None:
    """Send now (sync mode) or hand the delivery to a worker; called after commit."""
    if settings.Q_CLUSTER.get("sync"):
        delivery_attempt(delivery_id=delivery_id)
        return
    from django_q.tasks import async_task

    async_task(TASK, str(delivery_id), broker=_broker(), save=False, sync=False)


@lru_cache(maxsize=1)
def _broker():
    from django_q.brokers import get_broker

    return get_broker()


def delivery_attempt(*, delivery_id) -> WebhookDelivery | None:
    """One attempt, if the delivery is due and nobody else is sending it."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    subscription = delivery.subscription
    if not subscription.active:
        return _finish(delivery, WebhookDelivery.Status.FAILED, sent=False,
                       error="The subscription is no longer active; not sent.")
    try:
        secret = subscription_secret(subscription)
    except secrets.SecretDecryptError as exc:
        return _record_failure(delivery, None, exc.message)
    try:
        with tracing.current(delivery.traceparent):  # the POST carries the run's trace
            result = webhook_post(subscription.url, delivery.payload, secret,
                                  delivery_id=str(delivery.pk), event=delivery.event,
                                  timeout=_setting("TIMEOUT", 10))
    except ConnectorError as err:
        err.redact([secret])
        wait = err.retry_after if err.retryable else None
        return _record_failure(delivery, err.upstream_status, err.message, wait)
    except Exception as exc:  # a bug must cost one attempt, not the caller (sync mode)
        logger.exception("webhook delivery %s: unexpected error", delivery.pk)
        return _record_failure(delivery, None, f"{type(exc).__name__}: {exc}")
    return _finish(delivery, WebhookDelivery.Status.DELIVERED, status_code=result["status"])


def _claim(delivery_id) -> WebhookDelivery | None:
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    lease = now + timedelta(seconds=_setting("CLAIM_SECONDS", 120))
    claimed = WebhookDelivery.objects.filter(
        due, pk=delivery_id, status=WebhookDelivery.Status.PENDING).update(next_attempt_at=lease)
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("subscription").get(pk=delivery_id)


def _record_failure(delivery: WebhookDelivery, status_code: int | None, message: str,
                    retry_after: float | None = None) -> WebhookDelivery:
    attempt = delivery.attempts + 1
    error = f"attempt {attempt}: {message}"
    now = timezone.now()
    deadline = delivery.created_at + timedelta(seconds=_setting("RETRY_WINDOW_SECONDS", 3 * 86400))
    if now >= deadline:
        return _finish(delivery, WebhookDelivery.Status.FAILED, status_code=status_code,
                       error=f"{error} (gave up: retried for the whole retry window)")
    delay = max(retry_backoff_seconds(attempt), retry_after or 0)
    delivery.next_attempt_at = min(now + timedelta(seconds=delay), deadline)
    return _save_attempt(delivery, WebhookDelivery.Status.PENDING, status_code, error)


def _finish(delivery: WebhookDelivery, status: str, *, status_code: int | None = None,
            error: str = "", sent: bool = True) -> WebhookDelivery:
    delivery.next_attempt_at = None
    if status == WebhookDelivery.Status.DELIVERED:
        delivery.delivered_at = timezone.now()
    return _save_attempt(delivery, status, status_code, error, sent=sent)


def _save_attempt(delivery: WebhookDelivery, status: str, status_code: int | None,
                  error: str, *, sent: bool = True) -> WebhookDelivery:
    delivery.attempts += 1 if sent else 0
    delivery.status, delivery.last_status_code = status, status_code
    delivery.last_error = error[:ERROR_MAX]
    delivery.save(update_fields=["attempts", "status", "last_status_code", "last_error",
                                 "next_attempt_at", "delivered_at"])
    logger.info("webhook delivery %s (%s) attempt %s: %s %s", delivery.pk, delivery.event,
                delivery.attempts, status, status_code or "")
    return delivery


def retry_backoff_seconds(attempt: int) -> float:
    """30 s, 60 s, 120 s, … capped at 6 h, each scaled by a random 50–100 % (jitter)."""
    base = _setting("RETRY_BASE_SECONDS", 30)
    cap = _setting("RETRY_MAX_SECONDS", 6 * 3600)
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


# -- the sweeper ---------------------------------------------------------------------

def deliveries_due_sweep(*, limit: int = 500) -> int:
    """Send deliveries whose retry is due, whose claim expired (worker died), or whose
    first send never happened (task lost). Called by the sweeper every minute."""
    now = timezone.now()
    lost = now - timedelta(seconds=_setting("LOST_AFTER_SECONDS", 60))
    due = WebhookDelivery.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lte=lost),
        status=WebhookDelivery.Status.PENDING,
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
    ids = list(due)
    for delivery_id in ids:
        delivery_enqueue(delivery_id)
    return len(ids)
