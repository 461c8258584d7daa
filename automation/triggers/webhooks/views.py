"""The inbound webhook endpoint: plain Django (the raw body is what senders sign), no
session or CSRF, and every refusal in the one error format of docs/rest-api.md."""

import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from automation.exceptions import AutomationError
from automation.models import Run
from automation.services.runs import run_wait
from automation.triggers.webhooks.exceptions import (
    WebhookMethodNotAllowedError,
    WebhookPayloadTooLargeError,
    WebhookRateLimitedError,
)
from automation.triggers.webhooks.services import (
    Delivery,
    Outcome,
    webhook_deliver,
    webhook_triggers_for,
)
from config.api_errors import error_body
from entities.db import db_loss

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024


@csrf_exempt
def webhook_receive(request: HttpRequest, path: str) -> JsonResponse:
    read: list[bytes] = []  # the body is read once, also when the delivery runs twice

    def deliver() -> list[Delivery]:
        triggers = webhook_triggers_for(path, request.method or "")
        if not read:
            read.append(read_body(request))
        return webhook_deliver(triggers=triggers, body=read[0], headers=request.headers,
                               token=request.GET.get("token"))

    try:
        # A lost or refused database connection: once more on a fresh connection if
        # nothing was committed, else 503 + Retry-After, as the API (entities.db.db_loss)
        deliveries = db_loss.run_view(deliver, what=f"webhook {path}")
    except AutomationError as exc:
        return error_response(exc)
    except db_loss.DatabaseUnavailable as exc:
        response = JsonResponse(error_body(exc.error_code, str(exc.detail)), status=503)
        response["Retry-After"] = str(exc.wait)
        return response
    except Exception:
        logger.exception("inbound webhook on %s failed", path)
        return JsonResponse(error_body("server_error", "The webhook could not be processed."),
                            status=500)
    return delivery_response(deliveries)


def read_body(request: HttpRequest) -> bytes:
    """At most the configured number of bytes; refused before reading when the declared
    length is already over."""
    limit = int(getattr(settings, "ENTITYFLOW_WEBHOOK_MAX_BYTES", DEFAULT_MAX_BYTES))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    too_large = WebhookPayloadTooLargeError(f"The webhook body is larger than {limit} bytes.")
    if declared > limit:
        raise too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def waited_reply(delivery: Delivery) -> tuple[dict, int]:
    """config.respond "result": 200 {executionId, status, result} when the run ends
    within config.waitMs (no database connection held meanwhile), else 202 as always."""
    run = run_wait(run_id=delivery.execution_id, seconds=delivery.wait)
    if run.status not in Run.FINISHED:
        return {"started": True, "executionId": delivery.execution_id}, 202
    return {"executionId": delivery.execution_id, "status": run.status, "result": run.result,
            "error": run.error}, 200


def error_response(exc: AutomationError) -> JsonResponse:
    response = JsonResponse(error_body(exc.code, exc.message, exc.fields or None),
                            status=exc.http_status)
    if isinstance(exc, WebhookMethodNotAllowedError):
        response["Allow"] = ", ".join(exc.allowed)
    if isinstance(exc, WebhookRateLimitedError):
        response["Retry-After"] = str(exc.retry_after)
    return response


def delivery_response(deliveries: list[Delivery]) -> JsonResponse:
    """202 {"started": true, "executionId"} when a run started (or, with respond
    "result", 200 {executionId, status, result} once it ended); 200 {"duplicate": true,
    "executionId"} for a delivery seen before; 202 {"started": false} when the trigger's
    condition was false. Several processes on one path add `executions`. A sender's URL
    check (Slack's url_verification) gets 200 with the answer it expects."""
    replies = [d.reply for d in deliveries if d.reply is not None]
    if replies:
        return JsonResponse(replies[0], status=200)
    started = [d for d in deliveries if d.outcome == Outcome.STARTED]
    duplicates = [d for d in deliveries if d.outcome == Outcome.DUPLICATE]
    if started and started[0].wait:
        body, status = waited_reply(started[0])
    elif started:
        body, status = {"started": True, "executionId": started[0].execution_id}, 202
    elif duplicates:
        body = {"started": False, "duplicate": True, "executionId": duplicates[0].execution_id}
        status = 200
    else:
        body, status = {"started": False}, 202
    if len(deliveries) > 1:
        body["executions"] = [{"process": d.process, "outcome": d.outcome,
                               "executionId": d.execution_id} for d in deliveries]
    return JsonResponse(body, status=status)
