"""HubSpot error responses → ConnectorError subclasses (VENDORS §1.9).

Mapping keys on the HTTP status, never on the body's `category`, which HubSpot says to
treat as optional.
"""

import requests

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)

LOCKED_RETRY_AFTER = 2.0  # 423: "wait at least 2 s before retrying"


def error_for_response(resp: requests.Response, message: str,
                       retry_after: float | None) -> ConnectorError | None:
    """The HubSpot-specific error for `resp`, or None for the generic mapping."""
    status = resp.status_code
    correlation = resp.headers.get("X-HubSpot-Correlation-Id")
    if correlation:
        message = f"{message} (correlationId {correlation})"
    kwargs = {"upstream_status": status}
    if status == 401:
        return ConnectorAuthError(f"HubSpot rejected the access token (401): {message}",
                                  **kwargs)
    if status == 403:
        return ConnectorAuthError(
            f"HubSpot refused the request (403{required_scopes(resp)}): {message}", **kwargs)
    if status == 404:
        return ConnectorRequestError(f"HubSpot: object not found (404): {message}", **kwargs)
    if status == 423:
        return ConnectorRateLimitedError(f"HubSpot locked the record (423): {message}",
                                         retry_after=LOCKED_RETRY_AFTER, **kwargs)
    if status == 477:
        return ConnectorUnavailableError(f"HubSpot portal is migrating (477): {message}",
                                         retry_after=retry_after, **kwargs)
    return None


def required_scopes(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        scopes = [s for e in errors for s in (e.get("context") or {}).get("requiredScopes", [])]
    except (ValueError, AttributeError, TypeError):
        return ""
    return f", missing scopes: {', '.join(scopes)}" if scopes else ""


def stringify(properties: dict | None) -> dict:
    """HubSpot property values are strings on the wire (amount "1500.00", booleans "true")."""
    out = {}
    for key, value in (properties or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value if value is None or isinstance(value, str) else str(value)
    return out
