"""Generic REST calls (`http.request`) through the SSRF guard.

Credentials pick the auth scheme: `{"token"}` → Bearer, `{"username", "password"}` →
Basic, `{"apiKey", "apiKeyHeader"?}` → that header (default `X-API-Key`); an explicit
`"type": "bearer" | "basic" | "apiKey" | "none"` settles ambiguity. With
`connection.base_url`, a relative `url` is joined onto it.
"""

import base64
import json
from urllib.parse import urljoin, urlsplit

import requests

from integrations.base import Action, ActionResult, Connector, CredentialField
from integrations.exceptions import ConnectorConfigError, ConnectorRequestError
from integrations.net import header_subset, read_limited
from integrations.registry import register

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
SAFE_RESPONSE_HEADERS = ("content-type", "content-length", "etag", "last-modified", "location",
                         "retry-after", "x-request-id", "link", "cache-control")
_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}
AUTH_TYPES = ("none", "bearer", "basic", "apiKey")
_NEEDS = {"bearer": ("token",), "basic": ("username", "password"), "apikey": ("apiKey",)}


def auth_for(credentials: dict) -> tuple[dict, object | None, str | None]:
    """(headers, requests auth, name of the secret header) for the credential shape."""
    kind = (credentials.get("type") or "").lower()
    if kind == "none" or not credentials:
        return {}, None, None
    if kind == "bearer" or (not kind and credentials.get("token")):
        return {"Authorization": f"Bearer {credentials.get('token', '')}"}, None, None
    if kind == "basic" or (not kind and credentials.get("username")):
        return {}, (credentials.get("username", ""), credentials.get("password", "")), None
    if kind == "apikey" or (not kind and credentials.get("apiKey")):
        header = credentials.get("apiKeyHeader") or "X-API-Key"
        return {header: credentials.get("apiKey", "")}, None, header.lower()
    raise ConnectorConfigError("The HTTP connection's credentials have an unknown type.")


def _auth_kind(credentials: dict) -> str:
    kind = (credentials.get("type") or "").lower()
    if kind:
        return kind
    for key, inferred in (("token", "bearer"), ("username", "basic"), ("apiKey", "apikey")):
        if credentials.get(key):
            return inferred
    return "none"


@register
class HttpConnector(Connector):
    slug = "http"
    display_name = "HTTP"
    explicit_connection_only = True  # credentials go to whatever URL the params name
    credential_fields = (
        CredentialField("type", "Authentication", required=False, secret=False,
                        choices=AUTH_TYPES,
                        help_text="bearer: token; basic: username and password; apiKey: the "
                                  "key in a header. Empty: guessed from what is given."),
        CredentialField("token", "Bearer token", required=False),
        CredentialField("username", "Username", required=False),
        CredentialField("password", "Password", required=False),
        CredentialField("apiKey", "API key", required=False),
        CredentialField("apiKeyHeader", "API key header", required=False, secret=False,
                        help_text="Header that carries the API key (default X-API-Key)."),
    )
    actions = {
        "request": Action(
            "request",
            {"type": "object", "required": ["url"], "additionalProperties": False,
             "properties": {
                 "method": {"enum": METHODS + [m.lower() for m in METHODS]},
                 "url": {"type": "string", "minLength": 1},
                 "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                 "params": {"type": "object"},
                 "json": {},
                 "body": {"type": "string"},
                 "timeout": {"type": "number", "minimum": 0.1, "maximum": 120},
                 "expectStatus": {"type": ["integer", "array"], "items": _STATUS,
                                  "minimum": 100, "maximum": 599},
                 "followRedirects": {"type": "boolean"},
             }},
            "Send one HTTP request; returns {status, headers, body, truncated}.",
            maps_response=True, effect="unsafe_method"),
    }

    @classmethod
    def validate_credentials(cls, credentials: dict) -> dict[str, list[str]]:
        creds = dict(credentials)
        if isinstance(creds.get("type"), str):  # auth_for reads the type case-insensitively
            creds["type"] = {t.lower(): t for t in AUTH_TYPES}.get(creds["type"].lower(),
                                                                   creds["type"])
        errors = super().validate_credentials(creds)
        labels = {spec.name: spec.label for spec in cls.credential_fields}
        for key in _NEEDS.get(_auth_kind(creds), ()):
            if not creds.get(key) and key not in errors:
                errors[key] = [f"{labels[key]} is required for {creds.get('type') or 'this'} "
                               "authentication."]
        return errors

    def test_connection(self) -> dict:
        url = self.options.get("testUrl") or self.connection.base_url
        if not url:
            raise ConnectorConfigError("Set a base URL (or options.testUrl) to test with.")
        resp = self._send("GET", url, {})
        return {"ok": resp.status_code < 400, "status": resp.status_code}

    def request(self, params: dict) -> ActionResult:
        method = params.get("method", "GET").upper()
        url = self._url(params["url"])
        kwargs: dict = {"params": params.get("params"), "stream": True,
                        "allow_redirects": params.get("followRedirects", True)}
        if "json" in params:
            kwargs["json"] = params["json"]
        elif "body" in params:
            kwargs["data"] = params["body"].encode("utf-8")
        max_timeout = float(self.setting("ENTITYFLOW_HTTP_MAX_TIMEOUT", 30))
        kwargs["timeout"] = min(float(params.get("timeout") or self.timeout), max_timeout)
        resp = self._send(method, url, {**params.get("headers", {})}, **kwargs)
        expected = params.get("expectStatus")
        if expected is not None:
            expected = expected if isinstance(expected, list) else [expected]
            if resp.status_code not in expected:
                self._fail(resp, f"expected {', '.join(map(str, expected))}")
        elif resp.status_code >= 400:
            self._fail(resp)
        return ActionResult(output=self._output(resp))

    def _url(self, url: str) -> str:
        base = self.connection.base_url
        if base and not urlsplit(url).scheme:
            return urljoin(base.rstrip("/") + "/", url.lstrip("/"))
        return url

    def _send(self, method: str, url: str, headers: dict, **kwargs) -> requests.Response:
        auth_headers, auth, secret_header = auth_for(self.credentials)
        if secret_header:
            self.session.sensitive_headers.add(secret_header)
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, url, headers={**headers, **auth_headers},
                                    auth=auth, **kwargs)

    def _output(self, resp: requests.Response) -> dict:
        limit = int(self.setting("ENTITYFLOW_HTTP_MAX_RESPONSE_BYTES", 1024 * 1024))
        data, truncated = read_limited(resp, limit)
        text = data.decode(resp.encoding or "utf-8", errors="replace")
        body: object = text
        if "json" in resp.headers.get("Content-Type", "") and not truncated and text:
            try:
                body = json.loads(text)
            except ValueError:
                pass
        return {"status": resp.status_code, "headers": header_subset(resp.headers.items(),
                                                                    SAFE_RESPONSE_HEADERS),
                "body": body, "truncated": truncated}

    def _fail(self, resp: requests.Response, why: str = "") -> None:
        snippet, _ = read_limited(resp, 300)
        message = snippet.decode(resp.encoding or "utf-8", errors="replace").strip()
        if resp.status_code < 400:
            raise ConnectorRequestError(
                f"{self.error_subject(resp)} returned {resp.status_code} ({why}).",
                upstream_status=resp.status_code)
        self.raise_for_status(resp, message or why or "no details")

    def error_subject(self, resp: requests.Response) -> str:
        target = urlsplit(resp.url)
        return f"{resp.request.method} {target.hostname}{target.path}"

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        _, auth, _ = auth_for(self.credentials)
        if auth:  # what an echoing server would show of Basic auth
            raw = ":".join(auth).encode("latin-1", errors="replace")
            values.append(base64.b64encode(raw).decode())
        return values
