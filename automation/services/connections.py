"""Connections to outside systems: credentials are encrypted at rest and never logged.

Credentials are only ever decrypted here, to build a connector's `ConnectionConfig`.
Whatever a connector reports back (a test message, an error) passes through the
connection's own secret values before it is stored.
"""

import logging

from django.db import transaction
from django.utils import timezone

from automation.exceptions import AutomationError
from automation.models import Connection
from automation.services import secrets
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


def _check_credentials(credentials) -> dict:
    if not isinstance(credentials, dict):
        message = "Credentials must be a JSON object."
        raise ConnectionInvalidError(message, fields={"credentials": [message]})
    return credentials


@transaction.atomic
def connection_create(
    *, provider: str, name: str, credentials: dict | None = None, base_url: str = "",
    options: dict | None = None,
) -> Connection:
    """A connection whose credentials are stored encrypted (never in plain text)."""
    _check_provider(provider)
    connection = Connection(
        provider=provider, name=name, base_url=base_url or "", options=options or {},
        credentials_encrypted=secrets.encrypt_json(_check_credentials(credentials or {})),
    )
    connection.full_clean()
    connection.save()
    logger.info("connection %s (%s) created", name, provider)
    return connection


@transaction.atomic
def connection_update(
    *, connection: Connection, credentials: dict | None = None, base_url: str | None = None,
    options: dict | None = None, name: str | None = None,
) -> Connection:
    """Change the given fields; `credentials` replaces the stored set as a whole (None keeps it)."""
    fields = []
    if credentials is not None:
        connection.credentials_encrypted = secrets.encrypt_json(_check_credentials(credentials))
        fields.append("credentials_encrypted")
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
