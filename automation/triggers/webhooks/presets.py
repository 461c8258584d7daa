"""Checking a request against a trigger's verification preset, as each vendor documents it.

Every signing preset comes down to the same check: read what the request claims (the
signatures it carries, the timestamp it was signed at) and what those signatures cover,
then compare an HMAC of that with each active secret in constant time, and only then the
timestamp against the tolerance. A reader per preset does the vendor-specific part.
The vendors' schemes are described in docs/user-guide/triggers.md.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from automation.definitions.webhook_verify import Verification, standard_key
from integrations.exceptions import SignatureError
from integrations.signing import SIGNATURE_HEADER, current_time


@dataclass(frozen=True)
class Signed:
    """What a request claims: the bytes its signatures cover, those signatures decoded,
    and the time it says it was signed at (None when the scheme has no timestamp)."""

    message: bytes
    signatures: list[bytes]
    timestamp: int | None = None


Reader = Callable[[Verification, bytes, Mapping[str, str]], Signed]


def verify_signed(verification: Verification, secrets: list[str], body: bytes,
                  headers: Mapping[str, str], now: float | None = None) -> bytes:
    """The bytes the matching signature covers (the replay key is made of them).

    Raises SignatureError when no secret's HMAC matches any signature, or when the
    signed timestamp is further than the tolerance from `now` (either side)."""
    if not secrets:
        raise SignatureError("This webhook has no signing secret configured.")
    signed = READERS[verification.preset](verification, body, headers)
    digest = getattr(hashlib, verification.algorithm)
    keys = [_key(verification, secret) for secret in secrets]
    expected = [hmac.new(key, signed.message, digest).digest() for key in keys if key]
    if not any(hmac.compare_digest(mine, theirs)
               for mine in expected for theirs in signed.signatures):
        raise SignatureError("No signature matches the body with this webhook's secret.")
    if signed.timestamp is not None:
        current = current_time() if now is None else now
        if abs(current - signed.timestamp) > verification.tolerance:
            raise SignatureError(f"The signature timestamp is outside the "
                                 f"{verification.tolerance} s tolerance.")
    return signed.message


def token_matches(verification: Verification, secrets: list[str],
                  headers: Mapping[str, str]) -> bool:
    """The `token` preset: the header holds one of the secrets (constant time)."""
    given = (headers.get(verification.header) or "").encode()
    return bool(given) and any(hmac.compare_digest(given, secret.encode()) for secret in secrets)


def vendor_delivery_id(verification: Verification, payload: Any,
                       headers: Mapping[str, str]) -> str | None:
    """The sender's own id of this delivery, kept across its retries, when it has one."""
    header = DELIVERY_ID_HEADERS.get(verification.preset) or verification.delivery_header
    if header:
        return (headers.get(header) or "").strip() or None
    field = DELIVERY_ID_FIELDS.get(verification.preset)
    value = payload.get(field) if field and isinstance(payload, dict) else None
    return value.strip() or None if isinstance(value, str) else None


def signature_headers(verification: Verification) -> set[str]:
    """Headers that carry credentials under this preset (hidden from conditions)."""
    names = {SIGNATURE_HEADER, "Stripe-Signature", "X-Hub-Signature-256", "X-Hub-Signature",
             "X-Shopify-Hmac-Sha256", "X-Slack-Signature", "webhook-signature"}
    if verification.header:
        names.add(verification.header)
    return {name.lower() for name in names}


# --- what each preset reads ---------------------------------------------------------

def _key(verification: Verification, secret: str) -> bytes:
    if verification.preset == "standard-webhooks":
        try:
            return standard_key(secret)
        except (binascii.Error, ValueError):
            return b""
    return secret.encode("utf-8")


def _timestamp(value: str | None) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise SignatureError("The signature timestamp is missing or malformed.") from None


def _decoded(values: list[str], encoding: str) -> list[bytes]:
    """Each signature as bytes; one that does not decode matches nothing."""
    out = []
    for value in values:
        try:
            out.append(bytes.fromhex(value) if encoding == "hex"
                       else base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"The {name} header is missing.")
    return value.strip()


def _stripe_style(header_name: str) -> Reader:
    """`t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over `<t>.<body>`: Stripe's scheme, and
    ours (X-Entityflow-Signature). v0 and other schemes are ignored."""

    def read(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
        stamp, signatures = None, []
        for item in _header(headers, header_name).split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                stamp = _timestamp(value)
            elif key == "v1" and value:
                signatures.append(value.strip())
        if stamp is None or not signatures:
            raise SignatureError("The signature header must carry t=<timestamp> and "
                                 "v1=<signature>.")
        return Signed(f"{stamp}.".encode() + body, _decoded(signatures, "hex"), stamp)

    return read


def _standard(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
    """webhook-signature: `v1,<base64>` entries, space separated, over `<id>.<t>.<body>`."""
    message_id = _header(headers, "webhook-id")
    stamp = _timestamp(_header(headers, "webhook-timestamp"))
    entries = [entry.partition(",") for entry in _header(headers, "webhook-signature").split()]
    signatures = [value for version, _, value in entries if version == "v1"]
    return Signed(f"{message_id}.{stamp}.".encode() + body, _decoded(signatures, "base64"), stamp)


def _github(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
    value = _header(headers, "X-Hub-Signature-256")
    if not value.startswith("sha256="):
        raise SignatureError("X-Hub-Signature-256 must read sha256=<hex>.")
    return Signed(body, _decoded([value.removeprefix("sha256=")], "hex"))


def _shopify(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
    return Signed(body, _decoded([_header(headers, "X-Shopify-Hmac-Sha256")], "base64"))


def _slack(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
    """`v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`."""
    stamp = _timestamp(_header(headers, "X-Slack-Request-Timestamp"))
    value = _header(headers, "X-Slack-Signature")
    if not value.startswith("v0="):
        raise SignatureError("X-Slack-Signature must read v0=<hex>.")
    return Signed(f"v0:{stamp}:".encode() + body, _decoded([value[3:]], "hex"), stamp)


def _hmac(verification: Verification, body: bytes, headers: Mapping[str, str]) -> Signed:
    """Any other sender: the configured header, prefix, encoding and signed payload."""
    value = _header(headers, verification.header)
    if verification.prefix:
        if not value.startswith(verification.prefix):
            raise SignatureError(f"The {verification.header} header must start with "
                                 f"{verification.prefix}.")
        value = value[len(verification.prefix):]
    stamp = None
    if verification.timestamp_header:
        stamp = _timestamp(_header(headers, verification.timestamp_header))
    before, _, after = verification.signed_payload.partition("{body}")
    fill = {"{timestamp}": str(stamp)}
    message = _fill(before, fill).encode() + body + _fill(after, fill).encode()
    return Signed(message, _decoded([value.strip()], verification.encoding), stamp)


def _fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


READERS: dict[str, Reader] = {
    "entityflow": _stripe_style(SIGNATURE_HEADER),
    "stripe": _stripe_style("Stripe-Signature"),
    "standard-webhooks": _standard,
    "github": _github,
    "shopify": _shopify,
    "slack": _slack,
    "hmac": _hmac,
}
DELIVERY_ID_HEADERS = {"standard-webhooks": "webhook-id", "github": "X-GitHub-Delivery",
                       "shopify": "X-Shopify-Webhook-Id"}
DELIVERY_ID_FIELDS = {"stripe": "id", "slack": "event_id"}
