"""Connections to outside systems: credentials are encrypted at rest and never logged.

Credentials are only ever decrypted here, to build a connector's `ConnectionConfig`.
Whatever a connector reports back (a test message, an error) passes through the
connection's own secret values before it is stored.
"""

import logging

from django.db import transaction
from django.utils import timezone

from automation.connections import secrets
from automation.connections.limits import rate_limit_problems
from automation.exceptions import AutomationError
from automation.models import Connection
from integrations.base import ConnectionConfig
from integrations.exceptions import ConnectorError
from integrations.registry import get_connector, get_connector_class

logger = logging.getLogger(__name__)

TEST_MESSAGE_MAX = 500
_HIDDEN_TEST_KEYS = {"ok", "updatedCredentials"}


class ConnectionInvalidError(AutomationError):
    code = "invalid_connection"
    http_status = 422
    default_message = "The connection is not valid."


def _check_provider(provider: str) -> None:
    try:
        get_connector_class(provider)
    except ConnectorError:
        message = f"There is no connector called '{provider}'."
        raise ConnectionInvalidError(message, fields={"provider": [message]}) from None


def _check_credentials(provider: str, credentials) -> dict:
    """A set the provider can use, or none at all: a connection may be saved before its
    credentials are known (its test then says what is missing). The admin form always
    asks for a usable set."""
    if not isinstance(credentials, dict):
        message = "Credentials must be a JSON object."
        raise ConnectionInvalidError(message, fields={"credentials": [message]})
    if not credentials:
        return credentials
    errors = credential_errors(provider=provider, credentials=credentials)
    if errors:
        first = next(iter(errors))
        raise ConnectionInvalidError(f"{first}: {errors[first][0]}", fields=errors)
    return credentials


def _check_options(provider: str, options: dict) -> dict:
    errors = option_errors(provider=provider, options=options)
    if errors:
        first = next(iter(errors))
        raise ConnectionInvalidError(f"{first}: {errors[first][0]}", fields=errors)
    return options


def option_errors(*, provider: str, options: dict) -> dict[str, list[str]]:
    """The provider's own rules for its options, keyed `options.<name>` (none for a
    provider that is no longer registered: its options are kept as they are)."""
    errors = {}
    if "rateLimit" in options:  # every provider's calls may be rate limited (connections.limits)
        problems = rate_limit_problems(options["rateLimit"])
        if problems:
            errors["options.rateLimit"] = problems
    try:
        cls = get_connector_class(provider)
    except ConnectorError:
        return errors
    options = {key: value for key, value in options.items() if key != "rateLimit"}
    return {**errors, **{f"options.{key}": problems
                         for key, problems in cls.validate_options(options).items()}}


def credential_errors(*, provider: str, credentials: dict) -> dict[str, list[str]]:
    """The provider's own rules for a complete credential set, keyed `credentials.<name>`
    (messages name fields, never values)."""
    cls = get_connector_class(provider)
    return {f"credentials.{key}": problems
            for key, problems in cls.validate_credentials(credentials).items()}


def credentials_merged(*, connection: Connection, changes: dict) -> dict:
    """The stored credentials with `changes` applied: a key given a value replaces the
    stored one, a key given None is removed, a key not given is kept."""
    merged = connection_credentials(connection)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def connection_credentials_present(connection: Connection) -> dict[str, bool]:
    """Which of the provider's credential fields hold a value (never the values)."""
    stored = connection_credentials(connection)
    cls = get_connector_class(connection.provider)
    return {spec.name: stored.get(spec.name) not in (None, "") for spec in cls.credential_fields}


def connection_credentials_public(connection: Connection) -> dict[str, str]:
    """Stored values of the fields that are not secret (e.g. the HTTP auth type)."""
    stored = connection_credentials(connection)
    cls = get_connector_class(connection.provider)
    return {spec.name: str(stored.get(spec.name) or "")
            for spec in cls.credential_fields if not spec.secret}


@transaction.atomic
def connection_create(
    *, provider: str, name: str, credentials: dict | None = None, base_url: str = "",
    options: dict | None = None,
) -> Connection:
    """A connection whose credentials are stored encrypted (never in plain text)."""
    _check_provider(provider)
    connection = Connection(
        provider=provider, name=name, base_url=base_url or "",
        options=_check_options(provider, options or {}),
        credentials_encrypted=secrets.encrypt_json(_check_credentials(provider, credentials or {})),
    )
    connection.full_clean()
    connection.save()
    logger.info("connection %s (%s) created", name, provider)
    return connection


@transaction.atomic
def connection_update(
    *, connection: Connection, credentials: dict | None = None, base_url: str | None = None,
    options: dict | None = None, name: str | None = None, credentials_changes: dict | None = None,
) -> Connection:
    """Change the given fields. `credentials` replaces the stored set as a whole;
    `credentials_changes` changes only the keys it names (see `credentials_merged`), which
    is how the admin keeps a secret that was left blank. None keeps what is stored."""
    fields = []
    if credentials is not None and credentials_changes is not None:
        raise ValueError("give credentials or credentials_changes, not both")
    if credentials_changes is not None:
        credentials = credentials_merged(connection=connection, changes=credentials_changes)
    if credentials is not None:
        connection.credentials_encrypted = secrets.encrypt_json(
            _check_credentials(connection.provider, credentials))
        fields.append("credentials_encrypted")
    if options is not None:
        _check_options(connection.provider, options)
    for field, value in (("base_url", base_url), ("options", options), ("name", name)):
        if value is not None:
            setattr(connection, field, value)
            fields.append(field)
    if fields:
        connection.full_clean()
        connection.save(update_fields=fields)
        logger.info("connection %s updated (%s)", connection.name, ", ".join(sorted(fields)))
    return connection


@transaction.atomic
def connection_credentials_merge(*, connection: Connection, updated: dict) -> Connection:
    """Store credentials a connector renewed (e.g. a refreshed access token).

    The row is locked and re-read, so two workers refreshing at once both keep a
    working set instead of one overwriting the other's other keys.
    """
    locked = Connection.objects.select_for_update().get(pk=connection.pk)
    merged = {**secrets.decrypt_json(locked.credentials_encrypted), **updated}
    locked.credentials_encrypted = secrets.encrypt_json(merged)
    locked.save(update_fields=["credentials_encrypted"])
    connection.credentials_encrypted = locked.credentials_encrypted
    logger.info("connection %s: renewed credentials stored", connection.name)
    return connection


def connection_credentials(connection: Connection) -> dict:
    """The decrypted credentials. Callers must not log or return them."""
    return secrets.decrypt_json(connection.credentials_encrypted)


def connection_config(connection: Connection) -> ConnectionConfig:
    return ConnectionConfig(
        provider=connection.provider, credentials=connection_credentials(connection),
        base_url=connection.base_url or None, options=dict(connection.options or {}),
    )


def connection_test(connection: Connection) -> tuple[bool, str]:
    """One cheap authenticated call; records and returns (ok, message), never a secret."""
    try:
        connector = get_connector(connection_config(connection))
    except (ConnectorError, secrets.SecretDecryptError) as err:
        return _record_test(connection, False, err.message)
    try:
        with connector:
            facts = connector.test_connection()
        ok = bool(facts.get("ok", True))
        message = _describe(facts) if ok else "The connection test failed."
    except ConnectorError as err:
        ok, message = False, err.message
    if connector.updated_credentials:
        connection_credentials_merge(connection=connection, updated=connector.updated_credentials)
    return _record_test(connection, ok, _redact(message, connector.secret_values()))


def _record_test(connection: Connection, ok: bool, message: str) -> tuple[bool, str]:
    message = message[:TEST_MESSAGE_MAX]
    connection.last_tested_at = timezone.now()
    connection.last_test_ok, connection.last_test_message = ok, message
    connection.save(update_fields=["last_tested_at", "last_test_ok", "last_test_message"])
    logger.info("connection %s tested: %s", connection.name, "ok" if ok else "failed")
    return ok, message


def _describe(facts: dict) -> str:
    shown = [f"{key} {value}" for key, value in facts.items()
             if key not in _HIDDEN_TEST_KEYS and value not in (None, "")]
    return "Works" + (f" ({', '.join(shown)})." if shown else ".")


def _redact(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "[redacted]")
    return text
