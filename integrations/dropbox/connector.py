"""Dropbox API v2 with a refreshable Bearer token (VENDORS.md §2).

Credentials: `accessToken`, and for the refresh flow `refreshToken`, `appKey`,
`appSecret` (optionally `expiresAt`, unix seconds). A refreshed token is handed back in
`ActionResult.updated_credentials` for the caller to store. `connection.base_url`
overrides the RPC host; `options.contentBaseUrl` the content host (it defaults to the
RPC override when only that is set, which suits a single proxy or fake).
"""

import json
from urllib.parse import quote

import requests

from integrations.base import Action, ActionResult, Connector
from integrations.dropbox.auth import (
    CREDENTIAL_FIELDS,
    credential_errors,
    needs_refresh_first,
    refresh_access_token,
)
from integrations.dropbox.errors import error_for_response, has_tags
from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConfigError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRequestError,
)
from integrations.net import read_limited
from integrations.registry import register

# The web page of a path; not a documented contract, hence the setting.
DEFAULT_WEB_URL = "https://www.dropbox.com/home{path}"

_PATH = {"type": "string", "minLength": 1}


def _params(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props,
            "additionalProperties": False}


@register
class DropboxConnector(Connector):
    slug = "dropbox"
    display_name = "Dropbox"
    default_base_url = "https://api.dropboxapi.com"
    base_url_setting = "DROPBOX_API_BASE_URL"
    rate_limit_default_wait = 5.0  # the SDK's default when neither body nor header says
    # Dropbox publishes no number: it answers 429 with Retry-After, always (VENDORS §2), and
    # that hold is shared by every worker calling through the connection.
    default_rate_limit = {"requests": None, "perSeconds": 1}
    creates_external_links = True
    credential_fields = CREDENTIAL_FIELDS
    actions = {
        "create_folder": Action(
            "create_folder", _params(["path"], path=_PATH, existOk={"type": "boolean"}),
            "Create a folder; an existing folder counts as success unless existOk is false.",
            effect="always"),
        "upload_file": Action(
            "upload_file",
            {**_params(["path"], path=_PATH, content={"type": ["string", "object", "array"]},
                       contentUrl={"type": "string", "minLength": 1},
                       mode={"enum": ["add", "overwrite"]}, autorename={"type": "boolean"}),
             "anyOf": [{"required": ["content"]}, {"required": ["contentUrl"]}],
             "anyOfMessage": "give content or contentUrl"},
            "Upload text/JSON content, or the body fetched from contentUrl.",
            overwrites_existing_object_type="file", entity_content=True, effect="always"),
        "create_shared_link": Action(
            "create_shared_link", _params(["path"], path=_PATH, settings={"type": "object"}),
            "Create a shared link, or return the one that already exists.", effect="always"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._refreshed = False

    @classmethod
    def validate_credentials(cls, credentials: dict) -> dict[str, list[str]]:
        return {**credential_errors(credentials), **super().validate_credentials(credentials)}

    @property
    def content_base_url(self) -> str:
        url = (self.options.get("contentBaseUrl") or self.connection.base_url
               or self.setting("DROPBOX_CONTENT_BASE_URL", "https://content.dropboxapi.com"))
        return url.rstrip("/")

    # -- actions -------------------------------------------------------------------

    def test_connection(self) -> dict:
        """get_metadata on a probe path: a 409 not_found still proves the token works."""
        probe = self.options.get("rootPath") or "/.entityflow-connection-test"
        try:
            self.rpc("files/get_metadata", {"path": probe})
        except ConnectorRequestError as err:
            if not has_tags(err, "path/not_found"):
                raise
        result = {"ok": True}
        if self.updated_credentials:
            result["updatedCredentials"] = dict(self.updated_credentials)
        return result

    def create_folder(self, params: dict) -> ActionResult:
        path = params["path"]
        try:
            arg = {"path": path, "autorename": False}
            meta, created = self.rpc("files/create_folder_v2", arg)["metadata"], True
        except ConnectorConflictError as err:
            if not params.get("existOk", True) or not has_tags(err, "path/conflict/folder"):
                raise
            meta, created = self.rpc("files/get_metadata", {"path": path}), False
        return self._result(meta, "folder", created=created)

    def upload_file(self, params: dict) -> ActionResult:
        data = self._content(params)
        arg = {"path": params["path"], "mode": params.get("mode", "add"),
               "autorename": bool(params.get("autorename", False)), "mute": False}
        headers = {"Content-Type": "application/octet-stream",
                   "Dropbox-API-Arg": json.dumps(arg, ensure_ascii=True).replace("\x7f", "\\u007f")}
        resp = self.call("POST", f"{self.content_base_url}/2/files/upload", data=data,
                         headers=headers)
        return self._result(self.parse_json(resp), "file", created=True)

    def create_shared_link(self, params: dict) -> ActionResult:
        arg = {"path": params["path"], **({"settings": params["settings"]}
                                           if params.get("settings") else {})}
        try:
            meta, existing = self.rpc("sharing/create_shared_link_with_settings", arg), False
        except ConnectorConflictError as err:
            if not has_tags(err, "shared_link_already_exists"):
                raise
            meta, existing = self._existing_link(err, params["path"]), True
        output = {"url": meta.get("url"), "path": meta.get("path_lower") or params["path"],
                  "name": meta.get("name"), "existing": existing}
        external_id = meta.get("id") or params["path"]
        link = self.link(meta.get(".tag", "file"), external_id, meta.get("url"))
        return ActionResult(output=output, external_links=[link])

    # -- helpers -------------------------------------------------------------------

    def rpc(self, route: str, arg: dict) -> dict:
        return self.call_json("POST", f"{self.base_url}/2/{route}", json=arg)

    def _content(self, params: dict) -> bytes:
        content = params.get("content")
        if content is not None:
            text = content if isinstance(content, str) else json.dumps(content, indent=2)
            return text.encode("utf-8")
        limit = int(self.setting("DROPBOX_MAX_UPLOAD_BYTES", 150 * 1024 * 1024))
        try:
            resp = self.session.request("GET", params["contentUrl"], stream=True,
                                        timeout=self.timeout)
        except ConnectorError as err:
            raise type(err)(f"Fetching contentUrl failed: {err.message}") from None
        if resp.status_code >= 400:
            resp.close()
            raise ConnectorRequestError(f"Fetching contentUrl failed: HTTP {resp.status_code}.",
                                        upstream_status=resp.status_code)
        data, truncated = read_limited(resp, limit)
        if truncated:
            raise ConnectorRequestError(f"The content at contentUrl is larger than {limit} bytes.")
        return data

    def _existing_link(self, err: ConnectorConflictError, path: str) -> dict:
        meta = (getattr(err, "dropbox_error", {}).get("shared_link_already_exists") or {})
        if isinstance(meta.get("metadata"), dict) and meta["metadata"].get("url"):
            return meta["metadata"]
        links = self.rpc("sharing/list_shared_links", {"path": path, "direct_only": True})
        if not links.get("links"):
            raise err
        return links["links"][0]

    def _result(self, meta: dict, object_type: str, *, created: bool) -> ActionResult:
        path = meta.get("path_display") or meta.get("path_lower") or ""
        output = {"id": meta.get("id"), "name": meta.get("name"), "path": path,
                  "pathLower": meta.get("path_lower"), "created": created}
        for key in ("rev", "size", "content_hash", "server_modified"):
            if key in meta:
                output[key] = meta[key]
        template = self.setting("DROPBOX_WEB_URL_TEMPLATE", DEFAULT_WEB_URL)
        url = template.format(path=quote(path)) if template else None
        return ActionResult(output=output,
                            external_links=[self.link(object_type, meta.get("id") or path, url)])

    # -- auth and errors -------------------------------------------------------------

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        extra = kwargs.pop("headers", {})
        if not self._refreshed and needs_refresh_first(self.credentials):
            self._refresh()
        try:
            return super().call(method, url, headers={**self._auth(), **extra}, **kwargs)
        except ConnectorAuthError as err:
            if not has_tags(err, "expired_access_token") or self._refreshed:
                raise
        self._refresh()
        return super().call(method, url, headers={**self._auth(), **extra}, **kwargs)

    def _auth(self) -> dict:
        token = self.credentials.get("accessToken")
        if not token:
            raise ConnectorConfigError("The Dropbox connection has no accessToken.")
        return {"Authorization": f"Bearer {token}"}

    def _refresh(self) -> None:
        """One refresh per connector instance (the SDK's rule); the caller then retries."""
        self._refreshed = True
        try:
            updated = refresh_access_token(self.session, f"{self.base_url}/oauth2/token",
                                           self.credentials, self.timeout)
        except ConnectorError as err:
            err.redact(self.secret_values())
            raise
        self.credentials.update(updated)
        self.updated_credentials = updated

    def retry_after(self, resp: requests.Response) -> float | None:
        try:
            seconds = resp.json()["error"]["retry_after"]
            return max(0.0, float(seconds))
        except (ValueError, KeyError, TypeError):
            return super().retry_after(resp)

    def raise_for_status(self, resp: requests.Response, message: str | None = None) -> None:
        wait = self.retry_after(resp) if resp.status_code == 429 else None
        raise error_for_response(resp, retry_after=wait,
                                 fallback_message=message or self.error_message(resp))

