"""Webhook signatures: Stripe-style for outbound deliveries and for inbound webhook
triggers signed the same way, and the Standard Webhooks headers next to them.

Header: `X-Entityflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Several `v1` entries may be present (secret rotation); any one of them may match.

Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) are made with the
maintained `standardwebhooks` package, so any of that specification's libraries can
verify them (docs/user-guide/integrations.md).
"""

import hashlib
import hmac
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

from integrations.exceptions import SignatureError

SIGNATURE_HEADER = "X-Entityflow-Signature"
DELIVERY_HEADER = "X-Entityflow-Delivery"
EVENT_HEADER = "X-Entityflow-Event"
DEFAULT_TOLERANCE = 300
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
STANDARD_PREFIX = "whsec_"


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def current_time() -> float:
    """The clock every signature tolerance is checked against, ours and the inbound
    presets' alike."""
    return time.time()


def compute_signature(secret: str, body: bytes | str, timestamp: int) -> str:
    payload = f"{timestamp}.".encode() + _as_bytes(body)
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> str:
    """The header value for `body` (the exact bytes sent), signed now unless told."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={compute_signature(secret, body, t)}"


def _parse(header: str | None) -> tuple[int, list[str]]:
    if not header or not isinstance(header, str):
        raise SignatureError("The signature header is missing.")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("The signature header has a malformed timestamp.") from None
        elif key == "v1" and value:
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        raise SignatureError("The signature header must carry t=<timestamp> and v1=<signature>.")
    return timestamp, signatures


def signature_timestamp(header: str | None) -> int:
    """The `t=` of a signature header, as `verify` reads it (SignatureError if unreadable)."""
    return _parse(header)[0]


def verify(
    secret: str,
    body: bytes | str,
    header: str | None,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within
    `tolerance` seconds of `now` (either side, to allow for clock skew)."""
    timestamp, signatures = _parse(header)
    expected = compute_signature(secret, body, timestamp)
    matches = [hmac.compare_digest(expected.encode(), c.encode()) for c in signatures]
    if not any(matches):
        raise SignatureError("No v1 signature matches the body.")
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"The signature timestamp is outside the {tolerance} s tolerance."
        )


def standard_webhook(secret: str) -> Webhook:
    """The Standard Webhooks signer of a secret. A `whsec_<base64>` secret is read as
    the specification says; any other secret's UTF-8 bytes are the key, so a receiver
    passes `secret.encode()` to the library (docs/user-guide/integrations.md)."""
    return Webhook(secret if secret.startswith(STANDARD_PREFIX) else secret.encode("utf-8"))


def standard_headers(secret: str, body: bytes | str, message_id: str,
                     timestamp: int) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature for `body` (the exact bytes
    sent). `message_id` stays the same across retries of one delivery."""
    text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    moment = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return {
        STANDARD_ID_HEADER: message_id,
        STANDARD_TIMESTAMP_HEADER: str(int(timestamp)),
        STANDARD_SIGNATURE_HEADER: standard_webhook(secret).sign(message_id, moment, text),
    }
