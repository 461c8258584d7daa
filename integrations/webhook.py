"""Outbound webhooks: a JSON POST signed Stripe-style (X-Entityflow-Signature) and with the
Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature), both made
in integrations.signing over the same bytes and timestamp.

`webhook_post()` serves the automation app's subscription deliveries (no stored
connection needed); `WebhookConnector` is the `webhook.post` function for process steps.
Redirects are not followed: a 3xx counts as a failed delivery, as with Stripe.
"""

import json
import time
import uuid

import requests

from integrations.base import Action, ActionResult, Connector, CredentialField, error_for_status
from integrations.exceptions import ConnectorConfigError, ConnectorRequestError
from integrations.net import GuardedSession, guarded_session, read_limited
from integrations.registry import register
from integrations.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
    standard_headers,
)

USER_AGENT = "entityflow-webhooks/1"


def encode_payload(payload) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_post(
    url: str,
    payload,
    secret: str,
    *,
    delivery_id: str | None = None,
    event: str | None = None,
    headers: dict | None = None,
    timeout: float = 10,
    session: GuardedSession | None = None,
) -> dict:
    """POST `payload` signed with `secret`; returns {status, deliveryId, durationMs,
    responseBody} on 2xx, else raises a ConnectorError (retryable for 408/429/5xx and
    network failures)."""
    if not secret:
        raise ConnectorConfigError("A webhook needs a signing secret.")
    body = encode_payload(payload)
    delivery_id = delivery_id or str(uuid.uuid4())
    sent = signed_headers(secret, body, delivery_id, headers)
    if event:
        sent[EVENT_HEADER] = event
    own = session is None
    session = session or guarded_session()
    started = time.monotonic()
    try:
        resp = session.request("POST", url, data=body, headers=sent, timeout=timeout,
                               stream=True, allow_redirects=False)
        snippet, _ = read_limited(resp, 1024)
    finally:
        if own:
            session.close()
    text = snippet.decode(resp.encoding or "utf-8", errors="replace")
    _raise_unless_delivered(resp, text)
    return {"status": resp.status_code, "deliveryId": delivery_id,
            "durationMs": int((time.monotonic() - started) * 1000), "responseBody": text}


def signed_headers(secret: str, body: bytes, delivery_id: str,
                   extra: dict | None = None) -> dict[str, str]:
    """The headers of one attempt: both signatures share one timestamp, and the delivery
    id is both X-Entityflow-Delivery and webhook-id (the same on every retry)."""
    now = int(time.time())
    return {**(extra or {}), "Content-Type": "application/json", "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, body, now), DELIVERY_HEADER: delivery_id,
            **standard_headers(secret, body, delivery_id, now)}


def _raise_unless_delivered(resp: requests.Response, text: str) -> None:
    status = resp.status_code
    if 200 <= status < 300:
        return
    subject = f"Webhook receiver {requests.utils.urlparse(resp.url).hostname}"
    if status < 400:
        raise ConnectorRequestError(f"{subject} answered {status}; redirects are not followed.",
                                    upstream_status=status)
    wait = resp.headers.get("Retry-After")
    retry_after = float(wait) if wait and wait.isdigit() else None
    raise error_for_status(subject, status, text[:300] or "no details", retry_after)


@register
class WebhookConnector(Connector):
    slug = "webhook"
    display_name = "Webhook"
    explicit_connection_only = True  # credentials go to whatever URL the params name
    credential_fields = (CredentialField(
        "secret", "Signing secret",
        help_text="Signs each POST (X-Entityflow-Signature and the Standard Webhooks "
                  "headers); the receiver verifies with it."),)
    actions = {
        "post": Action(
            "post",
            {"type": "object", "required": ["payload"], "additionalProperties": False,
             "properties": {"url": {"type": "string", "minLength": 1}, "payload": {},
                            "secret": {"type": "string", "minLength": 1},
                            "deliveryId": {"type": "string", "minLength": 1},
                            "event": {"type": "string"},
                            "headers": {"type": "object",
                                        "additionalProperties": {"type": "string"}}}},
            "POST the payload as signed JSON to url (or the connection's base URL).",
            effect="always"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._param_secret: str | None = None

    def test_connection(self) -> dict:
        """Sends a signed `ping` event to the connection's URL."""
        result = self.run("post", {"payload": {"event": "ping"}, "event": "ping"})
        return {"ok": True, "status": result.output["status"]}

    def post(self, params: dict) -> ActionResult:
        url = params.get("url") or self.connection.base_url
        if not url:
            raise ConnectorConfigError("Give a url or set the connection's base URL.")
        self._param_secret = params.get("secret")
        secret = self._param_secret or self.credentials.get("secret")
        output = webhook_post(
            url, params["payload"], secret or "", delivery_id=self._delivery_id(params),
            event=params.get("event"), headers=params.get("headers"), timeout=self.timeout,
            session=self.session)
        return ActionResult(output=output)

    def _delivery_id(self, params: dict) -> str:
        if params.get("deliveryId"):
            return params["deliveryId"]
        if self.idempotency_key:  # the same attempt always gets the same delivery id
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entityflow:{self.idempotency_key}"))
        return str(uuid.uuid4())

    def secret_values(self) -> list[str]:
        return super().secret_values() + ([self._param_secret] if self._param_secret else [])
