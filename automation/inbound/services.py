"""Receiving a webhook: find its triggers by path, authenticate, dedupe, start runs.

Checks come in this order so a caller learns the cheapest refusal first and nothing is
parsed before it is authenticated: path (404), method (405), size (413, in the view),
signature or token (401), JSON (400). Then per process: the trigger's condition (false
only counts a skip), and the delivery row plus the run, committed together.
"""

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from automation.inbound.exceptions import (
    WebhookBodyInvalidError,
    WebhookMethodNotAllowedError,
    WebhookNotFoundError,
    WebhookUnauthorizedError,
)
from automation.inbound.validation import normalize_method
from automation.models import InboundDelivery, ProcessTrigger
from entities.exceptions import ExpressionError
from entities.expressions import evaluate_bool
from integrations.exceptions import SignatureError
from integrations.signing import DEFAULT_TOLERANCE, SIGNATURE_HEADER, verify

logger = logging.getLogger(__name__)

DELIVERY_HEADERS = ("X-Entityflow-Delivery", "X-Delivery-Id", "Idempotency-Key")
MAX_DELIVERY_ID = 128
_SECRET_HEADER_PARTS = ("auth", "cookie", "token", "secret", "signature", "key", "session",
                        "password", "csrf")
MAX_HEADER_VALUE = 1024


class Outcome:
    STARTED = "started"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Delivery:
    process: str
    outcome: str
    execution_id: str | None = None


def webhook_triggers_for(path: str, method: str) -> list[ProcessTrigger]:
    """Enabled webhook triggers listening on `path` for `method`, by process then position.

    One indexed lookup on ProcessTrigger.path (a leading '/' is optional in the request).
    """
    path = "/" + path.lstrip("/")
    if path == "/":
        raise WebhookNotFoundError()
    found = list(ProcessTrigger.objects.select_related("process", "version")
                 .filter(type=ProcessTrigger.Type.WEBHOOK, path__in=[path, path[1:]],
                         process__enabled=True)
                 .order_by("process_id", "position"))
    if not found:
        raise WebhookNotFoundError()
    accepting = [t for t in found if normalize_method(t.config) == method.upper()]
    if not accepting:
        raise WebhookMethodNotAllowedError(
            allowed=sorted({normalize_method(t.config) for t in found}))
    return accepting


def webhook_deliver(
    *, triggers: list[ProcessTrigger], body: bytes, headers: Mapping[str, str],
    token: str | None = None, now: float | None = None,
) -> list[Delivery]:
    """Start (at most) one run per process whose trigger authenticates this request.

    Raises WebhookUnauthorizedError when no trigger accepts the credentials and
    WebhookBodyInvalidError when the body is not JSON.
    """
    chosen = _authenticated(triggers, body, headers, token, now)
    payload = parse_json(body)
    delivery_id = delivery_id_for(body, headers)
    event = {"data": payload, "headers": safe_headers(headers)}
    return [_deliver_one(trigger, payload, event, delivery_id) for trigger in chosen]


def _authenticated(triggers, body, headers, token, now) -> list[ProcessTrigger]:
    """The first trigger of each process that accepts the request's credentials."""
    chosen: dict[int, ProcessTrigger] = {}
    refusal: WebhookUnauthorizedError | None = None
    for trigger in triggers:
        if trigger.process_id in chosen:
            continue
        try:
            authenticate(trigger.config, body=body, headers=headers, token=token, now=now)
        except WebhookUnauthorizedError as exc:
            refusal = refusal or exc
            continue
        chosen[trigger.process_id] = trigger
    if not chosen:
        raise refusal or WebhookUnauthorizedError()
    return list(chosen.values())


def authenticate(config: dict, *, body: bytes, headers: Mapping[str, str],
                 token: str | None, now: float | None = None) -> None:
    """Every mechanism the trigger configures must pass; one must be configured."""
    checked = False
    if config.get("validateSignature") is True:
        secret = config.get("secret")
        if not isinstance(secret, str) or not secret:
            raise WebhookUnauthorizedError("This webhook has no signing secret configured.")
        try:
            verify(secret, body, headers.get(SIGNATURE_HEADER), tolerance=DEFAULT_TOLERANCE,
                   now=now)
        except SignatureError as exc:
            raise WebhookUnauthorizedError(exc.message, code=exc.code) from None
        checked = True
    expected = config.get("token")
    if isinstance(expected, str) and expected:
        if not token or not hmac.compare_digest(token.encode(), expected.encode()):
            raise WebhookUnauthorizedError("The webhook token is missing or wrong.",
                                           code="invalid_token")
        checked = True
    if not checked:
        raise WebhookUnauthorizedError("This webhook has no secret or token configured.")


def parse_json(body: bytes) -> Any:
    """The body as JSON (an empty body is {}). NaN, Infinity and NUL characters are
    refused here: the database's JSON type cannot store them."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookBodyInvalidError("The webhook body must be JSON (UTF-8).") from None
    if _has_nul(value):
        raise WebhookBodyInvalidError("The webhook body must not contain NUL characters.")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def delivery_id_for(body: bytes, headers: Mapping[str, str]) -> str:
    """The sender's delivery id (hashed when long), else a hash of the body."""
    for name in DELIVERY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            if len(value) > MAX_DELIVERY_ID:
                return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
            return value
    return "body-sha256:" + hashlib.sha256(body).hexdigest()


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers conditions and steps may see: none that carry credentials."""
    safe = {}
    for name, value in headers.items():
        lower = name.lower()
        if any(part in lower for part in _SECRET_HEADER_PARTS) and lower != "idempotency-key":
            continue
        safe[lower] = str(value)[:MAX_HEADER_VALUE]
    return safe


def _deliver_one(trigger: ProcessTrigger, payload: Any, event: dict, delivery_id: str) -> Delivery:
    slug = trigger.process.slug
    if trigger.condition and not _condition_holds(trigger, {"input": payload, "event": event}):
        ProcessTrigger.objects.filter(pk=trigger.pk).update(skipped_count=F("skipped_count") + 1)
        return Delivery(slug, Outcome.SKIPPED)
    from automation.services.runs import run_start

    with transaction.atomic():
        try:
            with transaction.atomic():
                seen = InboundDelivery.objects.create(process_id=trigger.process_id,
                                                      delivery_id=delivery_id)
        except IntegrityError:
            run_id = (InboundDelivery.objects.filter(process_id=trigger.process_id,
                                                     delivery_id=delivery_id)
                      .values_list("run_id", flat=True).first())
            return Delivery(slug, Outcome.DUPLICATE, str(run_id) if run_id else None)
        run, created = run_start(
            process=trigger.process, version=trigger.version, input=payload,
            trigger={"type": "webhook", "triggerId": trigger.pk, "path": trigger.path,
                     "deliveryId": delivery_id, "event": event},
            idempotency_key=f"webhook:{trigger.process_id}:{delivery_id}",
        )
        InboundDelivery.objects.filter(pk=seen.pk).update(run=run)
    return Delivery(slug, Outcome.STARTED if created else Outcome.DUPLICATE, str(run.pk))


def _condition_holds(trigger: ProcessTrigger, scope: dict) -> bool:
    try:
        return evaluate_bool(trigger.condition, scope)
    except ExpressionError as exc:
        logger.warning("trigger %s condition failed: %s", trigger.pk, exc.message)
        return False
