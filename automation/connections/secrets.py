"""Encryption at rest for connection credentials and webhook signing secrets (Fernet).

The key comes from `settings.ENTITYFLOW_ENCRYPTION_KEY`: one Fernet key, or several
separated by commas while rotating (the first encrypts, every one of them decrypts).
When the setting is empty, a key is derived from `SECRET_KEY` with HKDF-SHA256, so a
development setup works without configuration; changing SECRET_KEY then makes stored
secrets unreadable, which is why production should set its own key.
"""

import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from automation.exceptions import AutomationError

_HKDF_SALT = b"entityflow.secrets"
_HKDF_INFO = b"entityflow encryption at rest v1"


class SecretDecryptError(AutomationError):
    code = "secret_unreadable"
    http_status = 500
    default_message = "A stored secret could not be decrypted."


def derive_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY (used when ENTITYFLOW_ENCRYPTION_KEY is empty)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8")))


@lru_cache(maxsize=4)
def _box(configured: str, secret_key: str) -> MultiFernet:
    raw = [part.strip() for part in configured.split(",") if part.strip()]
    keys = raw or [derive_key(secret_key)]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "ENTITYFLOW_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes, "
            "e.g. from Fernet.generate_key()), or several separated by commas."
        ) from None


def _fernet() -> MultiFernet:
    return _box(getattr(settings, "ENTITYFLOW_ENCRYPTION_KEY", "") or "", settings.SECRET_KEY)


def rotation_keys() -> tuple[Fernet, MultiFernet]:
    """The current key (the first configured) and every key a stored secret may have been
    written with: the configured ones, then the one derived from SECRET_KEY, so that a
    rotation also moves secrets written before ENTITYFLOW_ENCRYPTION_KEY was set.

    The derived key is only ever used here, to read a secret once and write it again with
    the current key; day-to-day decryption uses the configured keys alone."""
    _fernet()  # raises ImproperlyConfigured for a key that is not a Fernet key
    configured = getattr(settings, "ENTITYFLOW_ENCRYPTION_KEY", "") or ""
    keys = [part.strip().encode("ascii") for part in configured.split(",") if part.strip()]
    keys = list(dict.fromkeys([*keys, derive_key(settings.SECRET_KEY)]))
    return Fernet(keys[0]), MultiFernet([Fernet(key) for key in keys])


def encrypt_text(value: str) -> str:
    return _fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt_text(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretDecryptError(
            "A stored secret could not be decrypted: it was written with another key "
            "(ENTITYFLOW_ENCRYPTION_KEY, or SECRET_KEY when that setting is empty)."
        ) from None


def encrypt_json(value: dict) -> str:
    """'' for an empty dict, so a connection without credentials stores nothing."""
    if not value:
        return ""
    return encrypt_text(json.dumps(value, separators=(",", ":"), sort_keys=True))


def decrypt_json(token: str) -> dict:
    if not token:
        return {}
    value = json.loads(decrypt_text(token))
    if not isinstance(value, dict):
        raise SecretDecryptError("Stored credentials are not a JSON object.")
    return value


# Short names, used where a single secret string is stored (webhook subscriptions).
encrypt = encrypt_text
decrypt = decrypt_text
