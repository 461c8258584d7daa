"""Dropbox's refresh-token flow (VENDORS §2.6): a form POST to /oauth2/token."""

import time

import requests

from integrations.base import CredentialField
from integrations.exceptions import ConnectorAuthError, ConnectorBadResponseError
from integrations.net import GuardedSession

EXPIRY_BUFFER = 300  # refresh this many seconds before a known expiry, as the SDK does
REFRESH_KEYS = ("refreshToken", "appKey", "appSecret")
CREDENTIAL_FIELDS = (
    CredentialField("accessToken", "Access token", required=False,
                    help_text="A short-lived (sl.…) or long-lived access token. Optional when "
                              "the refresh token, app key and app secret are given."),
    CredentialField("refreshToken", "Refresh token", required=False,
                    help_text="From the OAuth flow with token_access_type=offline."),
    CredentialField("appKey", "App key", required=False),
    CredentialField("appSecret", "App secret", required=False),
)


def credential_errors(credentials: dict) -> dict[str, list[str]]:
    """An access token, or the three keys that can fetch one (VENDORS §2.6)."""
    if credentials.get("refreshToken"):
        return {key: [f"{label} is required with a refresh token."]
                for key, label in (("appKey", "App key"), ("appSecret", "App secret"))
                if not credentials.get(key)}
    if not credentials.get("accessToken"):
        return {"accessToken": ["Give an access token, or a refresh token with the app key "
                                "and app secret."]}
    return {}


def needs_refresh_first(credentials: dict) -> bool:
    """True when we can refresh and the access token is missing or about to expire."""
    if not credentials.get("refreshToken"):
        return False
    if not credentials.get("accessToken"):
        return True
    expires_at = credentials.get("expiresAt")
    return bool(expires_at) and time.time() > float(expires_at) - EXPIRY_BUFFER


def refresh_access_token(session: GuardedSession, token_url: str, credentials: dict,
                         timeout: float) -> dict:
    """Returns the credential keys to store: {"accessToken", "expiresAt"?}. The refresh
    response carries no new refresh token, so the stored one is kept."""
    if not all(credentials.get(key) for key in REFRESH_KEYS):
        raise ConnectorAuthError("The Dropbox access token expired and the connection has no "
                                 "refreshToken/appKey/appSecret to renew it.")
    form = {"grant_type": "refresh_token", "refresh_token": credentials["refreshToken"],
            "client_id": credentials["appKey"], "client_secret": credentials["appSecret"]}
    resp = session.request("POST", token_url, data=form, timeout=timeout)
    if resp.status_code != 200:
        raise ConnectorAuthError(
            f"Dropbox refused to refresh the access token ({resp.status_code} "
            f"{_oauth_error(resp)}).", upstream_status=resp.status_code)
    try:
        body = resp.json()
        token = body["access_token"]
    except (ValueError, KeyError, TypeError):
        raise ConnectorBadResponseError("Dropbox's token response has no access_token.") from None
    updated = {"accessToken": token}
    if body.get("expires_in"):
        updated["expiresAt"] = int(time.time()) + int(body["expires_in"])
    return updated


def _oauth_error(resp: requests.Response) -> str:
    try:
        body = resp.json()
        return f"{body['error']}: {body.get('error_description', '')}".strip(": ")
    except (ValueError, KeyError, TypeError, AttributeError):
        return resp.text[:200]
