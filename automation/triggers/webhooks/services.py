"""Receiving a webhook: find its triggers by path, authenticate, dedupe, start runs.

Checks come in this order so a caller learns the cheapest refusal first and nothing is
parsed before it is authenticated: path (404), method (405), size (413, in the view),
signature or token (401), JSON (400). Then per process: the trigger's condition (false
only counts a skip), and the delivery rows plus the run, committed together.

A delivery is seen once per key: its delivery id (a sender's retry, signed again later,
keeps it) and, for a signed webhook, the signed timestamp and body (the delivery id
header is not signed, so a captured request replayed within the tolerance with a new id
is a duplicate too). Two deliveries with byte-identical bodies signed in the same second
therefore count as one.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from automation.definitions.scope import expression_scope
from automation.definitions.webhook_config import normalize_method
from automation.models import InboundDelivery, ProcessTrigger
from automation.services.payloads import MAX_JSON_DEPTH, json_depth_exceeds
from automation.triggers.conditions import condition_holds
from automation.triggers.webhooks.exceptions import (
    WebhookBodyInvalidError,
    WebhookMethodNotAllowedError,
    WebhookNotFoundError,
    WebhookUnauthorizedError,
)
from entities.services import unstorable_text
from integrations.exceptions import SignatureError
from integrations.signing import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    signature_timestamp,
    verify,
)

DELIVERY_HEADERS = ("X-Entityflow-Delivery", "X-Delivery-Id", "Idempotency-Key")
MAX_DELIVERY_ID = 128
REPLAY_PREFIX = "signed-sha256:"
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
    return [_deliver_one(trigger, payload, event, _seen_keys(trigger, body, headers, delivery_id))
            for trigger in chosen]


def replay_key_for(body: bytes, headers: Mapping[str, str]) -> str:
    """What the signature covers (its timestamp and the body), as a dedupe key.

    The delivery id header is not signed: a captured request replayed within the
    tolerance with a new id would pass as a new delivery. Its signed timestamp and body
    cannot change without the secret, so this key catches such a replay."""
    timestamp = signature_timestamp(headers.get(SIGNATURE_HEADER))
    signed = f"{timestamp}.".encode() + body
    return REPLAY_PREFIX + hashlib.sha256(signed).hexdigest()


def _seen_keys(trigger: ProcessTrigger, body: bytes, headers: Mapping[str, str],
               delivery_id: str) -> list[str]:
    """Keys that each mark this delivery as seen: the delivery id (a sender's retry,
    re-signed later, keeps it) and, for signed webhooks, the signed content."""
    if trigger.config.get("validateSignature") is True:
        return [delivery_id, replay_key_for(body, headers)]
    return [delivery_id]


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
    """The body as JSON (an empty body is {}). NaN, Infinity, nesting deeper than the
    API allows, NUL characters and lone surrogates are refused here: the database's JSON
    type cannot store them (PostgreSQL), and both databases must answer alike."""
    if not body.strip():
        return {}
    too_deep = WebhookBodyInvalidError(
        f"The webhook body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError):
        raise WebhookBodyInvalidError("The webhook body must be JSON (UTF-8).") from None
    except RecursionError:
        raise too_deep from None
    if json_depth_exceeds(value):
        raise too_deep
    problem = unstorable_text(value, "body")
    if problem:
        where, message = problem
        raise WebhookBodyInvalidError(f"{where}: {message}", fields={where: [message]})
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def delivery_id_for(body: bytes, headers: Mapping[str, str]) -> str:
    """The sender's delivery id (hashed when long), else a hash of the body."""
    for name in DELIVERY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            if (len(value) > MAX_DELIVERY_ID or value.startswith(REPLAY_PREFIX)
                    or unstorable_text(value)):
                raw = value.encode("utf-8", "surrogatepass")
                return "sha256:" + hashlib.sha256(raw).hexdigest()
            return value
    return "body-sha256:" + hashlib.sha256(body).hexdigest()


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers conditions and steps may see: none that carry credentials."""
    safe = {}
    for name, value in headers.items():
        lower = name.lower()
        if any(part in lower for part in _SECRET_HEADER_PARTS) and lower != "idempotency-key":
            continue
        if unstorable_text(lower) or unstorable_text(str(value)):
            continue
        safe[lower] = str(value)[:MAX_HEADER_VALUE]
    return safe


def _deliver_one(trigger: ProcessTrigger, payload: Any, event: dict, keys: list[str]) -> Delivery:
    slug, delivery_id = trigger.process.slug, keys[0]
    if not condition_holds(trigger.pk, trigger.condition,
                           expression_scope(input=payload, event=event)):
        ProcessTrigger.objects.filter(pk=trigger.pk).update(skipped_count=F("skipped_count") + 1)
        return Delivery(slug, Outcome.SKIPPED)
    from automation.services.runs import run_start

    with transaction.atomic():
        try:
            with transaction.atomic():
                seen = [InboundDelivery.objects.create(process_id=trigger.process_id,
                                                       delivery_id=key) for key in keys]
        except IntegrityError:
            run_id = (InboundDelivery.objects.filter(process_id=trigger.process_id,
                                                     delivery_id__in=keys)
                      .exclude(run=None).values_list("run_id", flat=True).first())
            return Delivery(slug, Outcome.DUPLICATE, str(run_id) if run_id else None)
        run, created = run_start(
            process=trigger.process, version=trigger.version, input=payload,
            trigger={"type": "webhook", "triggerId": trigger.pk, "path": trigger.path,
                     "deliveryId": delivery_id, "event": event},
            idempotency_key=f"webhook:{trigger.process_id}:{delivery_id}",
        )
        InboundDelivery.objects.filter(pk__in=[row.pk for row in seen]).update(run=run)
    return Delivery(slug, Outcome.STARTED if created else Outcome.DUPLICATE, str(run.pk))

