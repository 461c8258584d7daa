"""Outbound notifications when runs end or approvals are requested.

Each matching webhook subscription gets a delivery row in the same transaction; the
delivery itself happens after commit (see services.webhooks). The run store calls these
as its hooks (store.hooks, registered in automation.apps)."""

from django.db import connections, transaction
from django.db.models import Q, QuerySet

from automation.models import ApprovalRequest, Run, WebhookDelivery, WebhookSubscription
from entities.db.compiled import CompiledRows

# The active subscriptions, read at every run's end in the transaction that records it
# (the general way: SQLite's every run): compiled once (entities.db.compiled), still read
# each time, so a subscription counts from the first run that ends after it is saved.
_ACTIVE = CompiledRows(lambda: WebhookSubscription.objects.filter(active=True))


def run_finished(run: Run) -> None:
    if run.status not in (Run.Status.COMPLETED, Run.Status.FAILED):
        return
    event = "workflow.completed" if run.status == Run.Status.COMPLETED else "workflow.failed"
    payload = {
        "event": event, "id": str(run.pk), "caseId": str(run.entity_id) if run.entity_id else None,
        "status": run.status, "workflowDefinitionId": run.process.slug,
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
    }
    notify(event, payload, traceparent=run.traceparent)


def subscribers_of(event: str) -> QuerySet:
    """The subscriptions a notification of `event` writes a delivery for: while there are
    none, a run's end needs nothing from this hook (the PostgreSQL store checks this in
    the statement that records the run's last step). A database without JSON containment
    (SQLite) gets every active subscription: more rows, never fewer, so none still means
    nothing to do (store.hooks)."""
    active = WebhookSubscription.objects.filter(active=True)
    if not connections[active.db].features.supports_json_field_contains:
        return active
    return active.filter(Q(events__contains=[event]) | Q(events__contains=["*"]))


def approval_event(approval: ApprovalRequest, event: str) -> None:
    """approval.requested (also when a change re-issues the request: `version`, `changes`),
    approval.reminded, approval.escalated (`escalatedTo`)."""
    payload = {
        "event": event, "id": str(approval.pk), "executionId": str(approval.run_id),
        "step": approval.step_run.step_id, "approvers": approval.approvers,
        "deadline": approval.deadline.isoformat() if approval.deadline else None,
        "version": approval.version,
    }
    if approval.changes and event == "approval.requested":
        payload["changes"] = approval.changes
    if event == "approval.escalated":
        payload["escalatedTo"] = approval.escalate_to
    notify(event, payload)


def notify(event: str, payload: dict, *, traceparent: str = "") -> list[WebhookDelivery]:
    """`traceparent`: the run's trace, which each POST of the delivery carries."""
    deliveries = []
    for subscription in _ACTIVE.all():
        if event in subscription.events or "*" in subscription.events:
            deliveries.append(WebhookDelivery.objects.create(
                subscription=subscription, event=event, payload=payload,
                traceparent=traceparent))
    for delivery in deliveries:
        # robust: a broker that is down must not fail what was committed (the webhook
        # sweeper sends the delivery later) nor skip the other after-commit doorbells
        transaction.on_commit(lambda pk=delivery.pk: _send(pk), robust=True)
    return deliveries


def _send(delivery_id) -> None:
    from automation.services import webhooks

    webhooks.delivery_enqueue(delivery_id)
