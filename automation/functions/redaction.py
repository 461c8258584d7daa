"""Scrub known secret values from anything headed for run history or logs.

Connectors register the raw secrets they used (per process) and every step output,
error and log passes through `redact` before it is written.
"""

from typing import Any

REDACTED = "[redacted]"
_secrets: set[str] = set()


def register_secrets(values) -> None:
    _secrets.update(v for v in values if isinstance(v, str) and len(v) >= 6)


def redact_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any) -> Any:
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
