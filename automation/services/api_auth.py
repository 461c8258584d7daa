"""API clients and their bearer tokens.

A client has a public key and a secret that is stored only as a password hash. It
trades key + secret for a short-lived access token and a longer-lived refresh token.
Tokens are random strings that are stored only as their SHA-256, so a leaked database
does not leak usable tokens, and looking one up is an indexed equality query (a hash of
a random value leaks nothing through timing). Deactivating a client stops every token
it holds on the next request, because each request checks the client row.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from automation.exceptions import AutomationError
from automation.models import ApiClient, ApiToken
from entities.db.compiled import CompiledLookup

DEFAULT_ACCESS_SECONDS = 3600
DEFAULT_REFRESH_SECONDS = 30 * 86400


class ApiAuthError(AutomationError):
    code = "unauthorized"
    http_status = 401
    default_message = "Invalid credentials."


def access_token_seconds() -> int:
    return int(getattr(settings, "ENTITYFLOW_ACCESS_TOKEN_SECONDS", DEFAULT_ACCESS_SECONDS))


def refresh_token_seconds() -> int:
    return int(getattr(settings, "ENTITYFLOW_REFRESH_TOKEN_SECONDS", DEFAULT_REFRESH_SECONDS))


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@transaction.atomic
def api_client_create(*, name: str, rate_limit_per_minute: int | None = None,
                      scopes: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create a client; returns it with its secret, which is not stored and not shown again.
    Without `scopes` it may do everything (docs/rest-api.md#scopes)."""
    secret = "efs_" + secrets.token_urlsafe(32)
    client = ApiClient(name=name, key="efk_" + secrets.token_hex(12),
                       secret_hash=make_password(secret))
    if rate_limit_per_minute is not None:
        client.rate_limit_per_minute = rate_limit_per_minute
    if scopes is not None:
        client.scopes = list(dict.fromkeys(scopes))
    client.full_clean()
    client.save()
    return client, secret


@transaction.atomic
def api_client_update(*, client: ApiClient, scopes: list[str],
                      rate_limit_per_minute: int) -> ApiClient:
    """The admin's edit: scopes and rate limit apply to the client's next request (tokens
    are looked up with their client on every call)."""
    client.scopes = list(dict.fromkeys(scopes))
    client.rate_limit_per_minute = rate_limit_per_minute
    client.full_clean()
    client.save(update_fields=["scopes", "rate_limit_per_minute"])
    return client


@transaction.atomic
def tokens_issue(*, client: ApiClient) -> dict:
    """A new access + refresh token pair, in the API's response shape."""
    now = timezone.now()
    access, refresh = "eat_" + secrets.token_urlsafe(32), "ert_" + secrets.token_urlsafe(32)
    ApiToken.objects.bulk_create([
        ApiToken(client=client, token_hash=token_hash(access), kind=ApiToken.Kind.ACCESS,
                 expires_at=now + timedelta(seconds=access_token_seconds())),
        ApiToken(client=client, token_hash=token_hash(refresh), kind=ApiToken.Kind.REFRESH,
                 expires_at=now + timedelta(seconds=refresh_token_seconds())),
    ])
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    return {"accessToken": access, "refreshToken": refresh, "expiresIn": access_token_seconds()}


def tokens_authorize(*, key: str, secret: str) -> dict:
    """Key + secret -> tokens. Every failure has the same message (no key probing)."""
    client = ApiClient.objects.filter(key=key).first()
    if client is None:
        make_password(secret)  # spend the same time as a real check
        raise ApiAuthError("Invalid key or secret.")
    if not check_password(secret, client.secret_hash) or not client.active:
        raise ApiAuthError("Invalid key or secret.")
    return tokens_issue(client=client)


@transaction.atomic
def tokens_refresh(*, refresh_token: str) -> dict:
    """Trade a refresh token for a new pair; the old refresh token is spent."""
    row = (ApiToken.objects.select_related("client")
           .filter(token_hash=token_hash(refresh_token), kind=ApiToken.Kind.REFRESH).first())
    if row is None or row.revoked or row.expires_at <= timezone.now() or not row.client.active:
        raise ApiAuthError("The refresh token is invalid or has expired.")
    spent = ApiToken.objects.filter(pk=row.pk, revoked=False).update(revoked=True)
    if not spent:  # a concurrent refresh won the race
        raise ApiAuthError("The refresh token is invalid or has expired.")
    return tokens_issue(client=row.client)


# Every API request looks its token up: compiled once (entities.db.compiled), read each time.
_ACCESS_TOKENS = CompiledLookup(lambda hashed: ApiToken.objects.select_related("client")
                                .filter(token_hash=hashed, kind=ApiToken.Kind.ACCESS))


def token_client(raw: str) -> ApiClient:
    """The active client an access token belongs to, or ApiAuthError saying why not."""
    row = _ACCESS_TOKENS.first(token_hash(raw))
    if row is None or row.revoked:
        raise ApiAuthError("The access token is not valid.")
    if row.expires_at <= timezone.now():
        raise ApiAuthError("The access token has expired; refresh it or authorize again.")
    if not row.client.active:
        raise ApiAuthError("The API client has been deactivated.")
    return row.client


@transaction.atomic
def api_client_deactivate(*, client: ApiClient) -> ApiClient:
    client.active = False
    client.save(update_fields=["active"])
    return client
