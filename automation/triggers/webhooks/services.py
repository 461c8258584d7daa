"""Receiving a webhook: find its triggers by path, authenticate, dedupe, start runs.

Checks come in this order so a caller learns the cheapest refusal first and nothing is
parsed before it is authenticated: path (404), method (405), size (413, in the view),
signature or token (401), JSON (400). Then per process: the trigger's condition (false
only counts a skip), and the delivery rows plus the run, committed together.

A delivery is seen once per key: its delivery id (the vendor's own where its preset
names one, such as X-GitHub-Delivery or a Stripe event's id, which a sender's retry keeps),
and, for a signed webhook, a hash of what the signature covers (a delivery id header is
usually not signed, so a captured request replayed within the tolerance with a new id is
a duplicate too). Two deliveries with byte-identical bodies signed in the same second
(or, for schemes without a timestamp such as GitHub's, ever) therefore count as one.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from automation.definitions.scope import expression_scope
from automation.definitions.webhook_config import is_public, normalize_method, reply_wait_seconds
from automation.definitions.webhook_verify import verification_of
from automation.models import InboundDelivery, ProcessTrigger
from automation.services.payloads import MAX_JSON_DEPTH, json_depth_exceeds
from automation.triggers.conditions import condition_holds
from automation.triggers.webhooks.auth import authenticate, public_rate_check
from automation.triggers.webhooks.exceptions import (
    WebhookBodyInvalidError,
    WebhookMethodNotAllowedError,
    WebhookNotFoundError,
    WebhookUnauthorizedError,
)
from automation.triggers.webhooks.presets import signature_headers, vendor_delivery_id
from entities.services import unstorable_text

DELIVERY_HEADERS = ("X-Entityflow-Delivery", "X-Delivery-Id", "Idempotency-Key")
MAX_DELIVERY_ID = 128
REPLAY_PREFIX = "signed-sha256:"
_SECRET_HEADER_PARTS = ("auth", "cookie", "token", "secret", "signature", "key", "session",
                        "password", "csrf", "hmac")
MAX_HEADER_VALUE = 1024


class Outcome:
    STARTED = "started"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    CHALLENGE = "challenge"


@dataclass(frozen=True)
class Delivery:
    process: str
    outcome: str
    execution_id: str | None = None
    reply: dict | None = None  # the answer a sender's URL check expects (CHALLENGE)
    wait: float = 0  # seconds to wait for the run's result (config.respond "result")


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

    Raises WebhookUnauthorizedError when no trigger accepts the credentials,
    WebhookRateLimitedError past a public webhook's rate, and WebhookBodyInvalidError
    when the body is not JSON.
    """
    chosen = _authenticated(triggers, body, headers, token, now)
    if any(is_public(trigger.config) for trigger, _ in chosen):
        public_rate_check(chosen[0][0].path)
    payload = parse_json(body)
    challenge = slack_challenge(chosen, payload)
    if challenge is not None:
        return [challenge]
    return [_deliver_one(trigger, payload, _event(trigger, payload, headers),
                         _seen_keys(trigger, signed, payload, body, headers))
            for trigger, signed in chosen]


def slack_challenge(chosen: list[tuple[ProcessTrigger, Any]], payload: Any) -> Delivery | None:
    """Slack checks an Events API URL with a signed `url_verification` request that must
    be answered with its `challenge`; it is not an event, so it starts nothing."""
    if not (isinstance(payload, dict) and payload.get("type") == "url_verification"
            and isinstance(payload.get("challenge"), str)):
        return None
    for trigger, _ in chosen:
        verification = _verification_or_none(trigger.config)
        if verification is not None and verification.preset == "slack":
            return Delivery(trigger.process.slug, Outcome.CHALLENGE,
                            reply={"challenge": payload["challenge"]})
    return None


def replay_key_for(signed: bytes) -> str:
    """What the signature covers (for most schemes its timestamp and the body), as a
    dedupe key. A delivery id header is usually not signed: a captured request replayed
    within the tolerance with a new id would pass as a new delivery. What was signed
    cannot change without the secret, so this key catches such a replay."""
    return REPLAY_PREFIX + hashlib.sha256(signed).hexdigest()


def _seen_keys(trigger: ProcessTrigger, signed: bytes | None, payload: Any, body: bytes,
               headers: Mapping[str, str]) -> list[str]:
    """Keys that each mark this delivery as seen: the delivery id (a sender's retry,
    re-signed later, keeps it) and, for signed webhooks, the signed content."""
    verification = _verification_or_none(trigger.config)
    vendor_id = vendor_delivery_id(verification, payload, headers) if verification else None
    delivery_id = _storable_id(vendor_id) if vendor_id else delivery_id_for(body, headers)
    return [delivery_id] if signed is None else [delivery_id, replay_key_for(signed)]


def _verification_or_none(config: dict):
    try:
        return verification_of(config)
    except (KeyError, TypeError, AttributeError):  # refused by authenticate already
        return None


def _event(trigger: ProcessTrigger, payload: Any, headers: Mapping[str, str]) -> dict:
    """`event` for conditions and steps: the body and the headers that carry no
    credentials (the trigger's own signature or token header included)."""
    verification = _verification_or_none(trigger.config)
    hidden = signature_headers(verification) if verification else set()
    return {"data": payload, "headers": safe_headers(headers, hidden=hidden)}


def _authenticated(triggers, body, headers, token, now) -> list[tuple[ProcessTrigger, Any]]:
    """The first trigger of each process that accepts the request's credentials, with
    what its signature covered (None when nothing was signed)."""
    chosen: dict[int, tuple[ProcessTrigger, Any]] = {}
    refusal: WebhookUnauthorizedError | None = None
    for trigger in triggers:
        if trigger.process_id in chosen:
            continue
        try:
            signed = authenticate(trigger.config, body=body, headers=headers, token=token,
                                  now=now)
        except WebhookUnauthorizedError as exc:
            refusal = refusal or exc
            continue
        chosen[trigger.process_id] = (trigger, signed)
    if not chosen:
        raise refusal or WebhookUnauthorizedError()
    return list(chosen.values())


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
            return _storable_id(value)
    return "body-sha256:" + hashlib.sha256(body).hexdigest()


def _storable_id(value: str) -> str:
    """A sender's delivery id as stored: hashed when long, unstorable, or shaped like
    one of our own keys (so it cannot stand in for one)."""
    if len(value) > MAX_DELIVERY_ID or value.startswith(REPLAY_PREFIX) or unstorable_text(value):
        return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return value


def safe_headers(headers: Mapping[str, str], *, hidden: set[str] = frozenset()) -> dict[str, str]:
    """Request headers conditions and steps may see: none that carry credentials."""
    safe = {}
    for name, value in headers.items():
        lower = name.lower()
        if any(part in lower for part in _SECRET_HEADER_PARTS) and lower != "idempotency-key":
            continue
        if lower in hidden:
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
        wait = reply_wait_seconds(trigger.config)
        started = {"type": "webhook", "triggerId": trigger.pk, "path": trigger.path,
                   "deliveryId": delivery_id, "event": event}
        if wait:  # its end is announced to the waiting request (store.waiting)
            started["wait"] = wait
        run, created = run_start(
            process=trigger.process, version=trigger.version, input=payload, trigger=started,
            idempotency_key=f"webhook:{trigger.process_id}:{delivery_id}",
        )
        InboundDelivery.objects.filter(pk__in=[row.pk for row in seen]).update(run=run)
    return Delivery(slug, Outcome.STARTED if created else Outcome.DUPLICATE, str(run.pk),
                    wait=wait if created else 0)

