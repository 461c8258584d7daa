"""The connector interface: one small class per provider, plain data in and out.

A caller (the automation engine) builds a `ConnectionConfig` from a stored connection,
picks the class from `integrations.registry`, and calls `run(action, params)`. It gets
an `ActionResult` back or a `ConnectorError` (integrations.exceptions) whose message is
safe to store: raw credential values are redacted from it.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from django.conf import settings

from integrations import schema
from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorBadResponseError,
    ConnectorConfigError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)
from integrations.net import GuardedSession


@dataclass
class ConnectionConfig:
    provider: str
    credentials: dict = field(default_factory=dict)
    base_url: str | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ActionResult:
    """`external_links`: `{"provider", "objectType", "externalId", "url"}` dicts.
    `updated_credentials`: credential keys the caller must store (e.g. a refreshed token)."""

    output: dict
    external_links: list[dict] = field(default_factory=list)
    updated_credentials: dict | None = None


@dataclass(frozen=True)
class CredentialField:
    """One credential a connection of this provider stores (encrypted at rest).

    `secret` fields are write-only: the admin offers an empty password input and never
    renders a stored value back. `choices` makes a plain (non-secret) select.
    """

    name: str
    label: str
    required: bool = True
    secret: bool = True
    help_text: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    """`method` names the connector method that performs the action; it takes `params`.

    What a caller needs to know beyond the params: `maps_response`, its output may be
    reshaped by a `response` mapping the caller applies; `updates_existing_object_type`,
    an external link of that type on the caller's entity makes the action update that
    object (its id passed as `externalId`) instead of creating another;
    `overwrites_existing_object_type`, such a link makes it replace the object
    (`mode: "overwrite"` unless a mode is given); `entity_content`, its `content` param may
    be "entity.json" or "entity.csv", the caller's entity written as that file;
    `literal_params`, params the caller must pass as written, never rendered as templates
    (SQL text: a value pasted into it would be an injection)."""

    method: str
    params_schema: dict
    description: str = ""
    maps_response: bool = False
    updates_existing_object_type: str | None = None
    overwrites_existing_object_type: str | None = None
    entity_content: bool = False
    literal_params: tuple[str, ...] = ()
    # An external effect (docs/user-guide/operating-runs.md#the-idempotency-ledger):
    # "always", "unsafe_method" (only with a method other than GET, HEAD, OPTIONS) or ""
    # for a read. The caller records an effect in its ledger and serves a repeat from it.
    effect: str = ""

    def makes_effect(self, params: dict) -> bool:
        if self.effect == "unsafe_method":
            return str(params.get("method") or "GET").upper() not in SAFE_METHODS
        return self.effect == "always"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Throttle(Protocol):
    """What the caller hands a connector to keep a rate limit shared by every worker
    (automation.functions.ratelimit): asked before each request, told of each 429."""

    def before_request(self) -> None:
        """Wait for (or take) a free request; may raise to put the whole call off."""

    def refused(self, retry_after: float | None) -> None:
        """The vendor answered 429: nobody may call before `retry_after` seconds."""


# Credential keys that only describe the shape (redacting "bearer" would garble messages).
NON_SECRET_CREDENTIAL_KEYS = frozenset({"type", "apiKeyHeader", "expiresAt"})


def _flatten_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [s for item in value for s in _flatten_strings(item)]
    return []


class Connector:
    """Base class. Subclasses set the class attributes and implement `test_connection`
    plus one method per entry of `actions`; a forgotten one fails loudly.

    `explicit_connection_only`: the connector sends credentials wherever its params
    point, so a caller never picks a connection for it implicitly (without one named, it
    runs without credentials). `default_timeout`: seconds per call unless the caller's
    settings say otherwise. `creates_external_links`: its actions link the caller's
    entity to the objects they create (ActionResult.external_links).
    `default_rate_limit`: the vendor's documented limit, `{"requests", "perSeconds"}`
    (`requests` None: no published number, only its 429s hold the caller back); a
    connection may override or disable it (docs/user-guide/rate-limits.md)."""

    slug: str = ""
    display_name: str = ""
    default_base_url: str = ""
    base_url_setting: str | None = None
    actions: dict[str, Action] = {}
    credential_fields: tuple[CredentialField, ...] = ()
    rate_limit_default_wait: float = 10.0
    explicit_connection_only: bool = False
    default_timeout: float = 10.0
    creates_external_links: bool = False
    default_rate_limit: dict | None = None

    def __init__(
        self,
        connection: ConnectionConfig,
        *,
        idempotency_key: str | None = None,
        timeout: float = 10,
        throttle: Throttle | None = None,
    ):
        self.connection = connection
        self.credentials = dict(connection.credentials or {})
        self.options = dict(connection.options or {})
        self.idempotency_key = idempotency_key
        self.timeout = timeout
        self.session = GuardedSession()
        self.updated_credentials: dict | None = None
        self.sleep = time.sleep
        self.throttle = throttle

    # -- the interface -------------------------------------------------------------

    def test_connection(self) -> dict:
        """Make one cheap authenticated call; return facts to show (never secrets)."""
        raise NotImplementedError(
            f"subclasses of Connector must provide a test_connection() method ({type(self)})"
        )

    def run(self, action: str, params: dict) -> ActionResult:
        spec = self.actions.get(action)
        if spec is None:
            raise ConnectorConfigError(f"{self.display_name} has no action {action!r}.")
        errors = self.validate_params(action, params)
        if errors:
            raise ConnectorConfigError(
                f"Invalid params for {self.slug}.{action}.", fields=errors
            )
        method = getattr(self, spec.method, None)
        if method is None:
            raise NotImplementedError(f"{type(self).__name__} lacks the method {spec.method}()")
        try:
            result = method(dict(params))
        except ConnectorError as err:
            err.redact(self.secret_values())
            err.updated_credentials = self.updated_credentials
            raise
        if self.updated_credentials:
            result.updated_credentials = dict(self.updated_credentials)
        return result

    @classmethod
    def validate_params(
        cls, action: str, params: dict, *, partial: bool = False
    ) -> dict[str, list[str]]:
        """Field errors for `params` of `action` (empty when valid). `partial` skips
        required checks, for saved function config that the step input completes."""
        spec = cls.actions.get(action)
        if spec is None:
            return {"action": [f"unknown action {action!r} for {cls.slug}"]}
        return schema.validate(spec.params_schema, params, partial=partial)

    @classmethod
    def validate_credentials(cls, credentials: dict) -> dict[str, list[str]]:
        """Field errors for a complete credential set (empty when usable): each required
        field present, every declared one text. Subclasses add their either/or rules."""
        errors: dict[str, list[str]] = {}
        for spec in cls.credential_fields:
            value = credentials.get(spec.name)
            if value is None or value == "":
                if spec.required:
                    errors.setdefault(spec.name, []).append(f"{spec.label} is required.")
            elif not isinstance(value, str):
                errors.setdefault(spec.name, []).append(f"{spec.label} must be text.")
            elif spec.choices and value not in spec.choices:
                errors.setdefault(spec.name, []).append(
                    f"{spec.label} must be one of {', '.join(spec.choices)}.")
        return errors

    @classmethod
    def validate_options(cls, options: dict) -> dict[str, list[str]]:
        """Field errors for a connection's options (empty when usable). Most connectors
        read their options leniently; one whose options change what it may do (the SQL
        connector's `allowWrites`) checks them when the connection is saved."""
        return {}

    def secret_values(self) -> list[str]:
        """Every raw secret string of this connection, for redaction by callers (not the
        fields the connector declares non-secret, such as a database URL)."""
        shown = NON_SECRET_CREDENTIAL_KEYS | {spec.name for spec in self.credential_fields
                                              if not spec.secret}
        values: list[str] = []
        for creds in (self.credentials, self.connection.credentials, self.updated_credentials):
            values += _flatten_strings({k: v for k, v in (creds or {}).items()
                                        if k not in shown})
        return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def close(self) -> None:
        """Release pooled connections (also done by `with connector:`)."""
        self.session.close()

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- helpers for subclasses ----------------------------------------------------

    def setting(self, name: str, default: Any) -> Any:
        return getattr(settings, name, default)

    @property
    def base_url(self) -> str:
        configured = self.connection.base_url
        if not configured and self.base_url_setting:
            configured = self.setting(self.base_url_setting, None)
        return (configured or self.default_base_url).rstrip("/")

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        """One guarded request: waits out short 429s (bounded), then maps any error
        status with `raise_for_status`. Error messages come back redacted."""
        try:
            resp = self._send_with_rate_limit(method, url, **kwargs)
            if resp.status_code >= 400:
                self.raise_for_status(resp)
            return resp
        except ConnectorError as err:
            err.redact(self.secret_values())
            raise

    def call_json(self, method: str, url: str, **kwargs) -> dict:
        return self.parse_json(self.call(method, url, **kwargs))

    def _send_with_rate_limit(self, method: str, url: str, **kwargs) -> requests.Response:
        prefix = self.slug.upper()
        retries = int(self.setting(f"{prefix}_RATE_LIMIT_RETRIES", 3))
        cap = float(self.setting(f"{prefix}_RATE_LIMIT_MAX_WAIT", 10))
        for attempt in range(retries + 1):
            kwargs.setdefault("timeout", self.timeout)
            if self.throttle is not None:
                self.throttle.before_request()
            resp = self.session.request(method, url, **kwargs)
            if resp.status_code != 429:
                return resp
            wait = self.retry_after(resp)
            if self.throttle is not None:
                self.throttle.refused(wait)  # holds every worker's bucket; may put the call off
            if wait is None or wait > cap or attempt == retries:
                return resp  # raise_for_status reports it with retry_after
            if self.throttle is None:
                self.sleep(wait)  # with a throttle, before_request waits out the hold
        return resp

    def retry_after(self, resp: requests.Response) -> float | None:
        """Seconds to wait before retrying a 429 (None: do not retry in-process)."""
        value = resp.headers.get("Retry-After")
        try:
            return max(0.0, float(value)) if value is not None else self.rate_limit_default_wait
        except ValueError:
            return self.rate_limit_default_wait

    def error_message(self, resp: requests.Response) -> str:
        """The vendor's own explanation from an error body, shortened."""
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:300].strip()
        if isinstance(body, dict):
            detail = body.get("message") or body.get("error_description") or body.get("error")
            if isinstance(detail, dict):
                detail = detail.get("message") or json.dumps(detail)[:300]
            if detail:
                return str(detail)[:300]
        return json.dumps(body)[:300]

    def raise_for_status(self, resp: requests.Response, message: str | None = None) -> None:
        """Raise the ConnectorError subclass for an error status (4xx/5xx)."""
        message = self.error_message(resp) if message is None else message
        wait = self.retry_after(resp) if resp.status_code == 429 else None
        raise error_for_status(self.error_subject(resp), resp.status_code, message, wait)

    def error_subject(self, resp: requests.Response) -> str:
        return self.display_name

    def parse_json(self, resp: requests.Response) -> dict:
        try:
            body = resp.json()
        except ValueError:
            raise ConnectorBadResponseError(
                f"{self.display_name} sent a response that is not JSON ({resp.status_code})."
            ) from None
        if not isinstance(body, dict):
            raise ConnectorBadResponseError(f"{self.display_name} sent an unexpected JSON shape.")
        return body

    def link(self, object_type: str, external_id: str, url: str | None) -> dict:
        return {"provider": self.slug, "objectType": object_type,
                "externalId": str(external_id), "url": url}


def error_for_status(
    subject: str, status: int, message: str, retry_after: float | None = None
) -> ConnectorError:
    """The generic mapping of an HTTP error status to a ConnectorError subclass."""
    kwargs = {"upstream_status": status}
    if status in (401, 403):
        return ConnectorAuthError(f"{subject} rejected the credentials ({status}): {message}",
                                  **kwargs)
    if status == 429:
        return ConnectorRateLimitedError(
            f"{subject} is rate limiting requests (429): {message}",
            retry_after=retry_after, **kwargs)
    if status == 409:
        return ConnectorConflictError(f"{subject} reported a conflict (409): {message}", **kwargs)
    if status >= 500 or status == 408:
        return ConnectorUnavailableError(f"{subject} failed ({status}): {message}", **kwargs)
    return ConnectorRequestError(f"{subject} rejected the request ({status}): {message}", **kwargs)
