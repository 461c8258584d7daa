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
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import connections, router, transaction
from django.utils import timezone

from automation.exceptions import AutomationError
from automation.models import ApiClient, ApiToken
from entities.db import driver, prepared
from entities.db.compiled import CompiledLookup, RowBuilder

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
    return _client_of(_ACCESS_TOKENS.first(token_hash(raw)))


def token_client_with(raw: str, lookup: CompiledLookup, value: Any) -> tuple[ApiClient, Any]:
    """token_client(raw), and the row `lookup.first(value)` finds (or None), read in one
    statement: one round trip for both where there were two (on PostgreSQL a round trip
    cost the API trigger more than its statement, docs/performance.md, "The API trigger
    on PostgreSQL: round trips and DRF's share"). The row is read whatever the token
    turns out to be, and returned only with an accepted one (ApiAuthError otherwise, as
    token_client): what the caller may do with it is decided after authentication."""
    using = router.db_for_read(ApiToken)
    joined = _joined(lookup, using)
    params = list(joined.params)
    params[joined.slots[0]], params[joined.slots[1]] = token_hash(raw), value
    if connections[using].vendor == "sqlite":  # past Django's cursor, as CompiledLookup
        row = driver.execute(joined.sql, params, using=using).fetchone()
    else:
        with connections[using].cursor() as cursor:
            prepared.execute(cursor, joined.sql, params, using=using)
            row = cursor.fetchone()
    # no row: no such token (refused as token_client refuses it), the other not read
    client = _client_of(None if row is None else joined.token.build(row[:joined.width]))
    other = row[joined.width:]
    if len(other) != len(joined.other.compiler.select):
        raise RuntimeError(f"the joint look-up's row has {len(row)} columns")
    return client, None if all(column is None for column in other) else joined.other.build(other)


class _Joined(NamedTuple):
    token: RowBuilder  # builds the token (and its client) from the first `width` columns
    other: RowBuilder  # the other look-up's row from the rest
    width: int
    sql: str
    params: tuple
    slots: tuple[int, int]  # where the token's hash and the other value go in `params`


_JOINED: dict[tuple[CompiledLookup, str], _Joined] = {}


def _joined(lookup: CompiledLookup, using: str) -> _Joined:
    """`SELECT token.*, other.* FROM (<the token's look-up>) token LEFT JOIN (<lookup's>)
    other ON TRUE`, from both look-ups' own compiled SQL (one row each at most), once per
    look-up and database."""
    key = (lookup, using)
    joined = _JOINED.get(key)
    if joined is None:
        token, token_sql, token_params, token_slot = _ACCESS_TOKENS.compiled_for(using)
        other, other_sql, other_params, other_slot = lookup.compiled_for(using)
        width = len(token.compiler.select)
        sql = (f"SELECT token.*, other.* FROM ({token_sql}) token "  # noqa: S608 - compiled SQL
               f"LEFT JOIN ({other_sql}) other ON TRUE")
        joined = _JOINED.setdefault(key, _Joined(
            token, other, width, sql, (*token_params, *other_params),
            (token_slot, len(token_params) + other_slot)))
    return joined


def _client_of(row: ApiToken | None) -> ApiClient:
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
