"""Who may call a webhook trigger: its verification preset, its `?token=`, or anyone when
it says `public: true` (then at most ENTITYFLOW_WEBHOOK_PUBLIC_RATE requests a minute per
path). See docs/user-guide/triggers.md."""

import hashlib
import hmac
import time
from collections.abc import Mapping

from django.conf import settings
from django.core.cache import cache

from automation.definitions.webhook_config import is_public
from automation.definitions.webhook_verify import PRESETS, trigger_secrets, verification_of
from automation.triggers.webhooks.exceptions import (
    WebhookRateLimitedError,
    WebhookUnauthorizedError,
)
from automation.triggers.webhooks.presets import token_matches, verify_signed
from integrations.exceptions import SignatureError

DEFAULT_PUBLIC_RATE = 60  # requests a minute per path


def authenticate(config: dict, *, body: bytes, headers: Mapping[str, str],
                 token: str | None, now: float | None = None) -> bytes | None:
    """Every mechanism the trigger configures must pass; one must be configured unless
    the webhook is public. Returns what a signature covered (for the replay key), or
    None when nothing was signed."""
    signed, checked = None, is_public(config)
    verification = _verification(config)
    if verification is not None and verification.preset == "token":
        if not token_matches(verification, trigger_secrets(config), headers):
            raise WebhookUnauthorizedError(f"The {verification.header} header is missing or "
                                           "wrong.", code="invalid_token")
        checked = True
    elif verification is not None:
        try:
            signed = verify_signed(verification, trigger_secrets(config), body, headers, now)
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
    return signed


def _verification(config: dict):
    """The trigger's verification; a stored config this version cannot read refuses the
    request rather than letting it through."""
    try:
        verification = verification_of(config)
    except (KeyError, TypeError, AttributeError):
        verification = None
        if config.get("verify") is not None:
            raise WebhookUnauthorizedError("This webhook's verification is misconfigured.") \
                from None
    if verification is not None and verification.preset not in PRESETS:
        raise WebhookUnauthorizedError("This webhook's verification is misconfigured.")
    return verification


def public_rate_check(path: str) -> None:
    """Count one request on a public webhook's path in this minute's window; refuse past
    the limit. The count lives in Django's cache: per process with the default
    local-memory cache, shared when CACHES points at Redis (docs/operating.md)."""
    limit = int(getattr(settings, "ENTITYFLOW_WEBHOOK_PUBLIC_RATE", DEFAULT_PUBLIC_RATE))
    if limit <= 0:
        return
    now = time.time()
    digest = hashlib.sha256(path.encode()).hexdigest()[:32]
    key = f"entityflow:public-webhook:{digest}:{int(now // 60)}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    if count > limit:
        raise WebhookRateLimitedError(
            f"This public webhook takes at most {limit} requests a minute.",
            retry_after=max(1, int(60 - now % 60)))
