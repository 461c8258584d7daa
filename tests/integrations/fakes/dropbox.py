"""Fake Dropbox API v2 (VENDORS §2.8 checklist): an API listener (RPC routes and
/oauth2/token) and a content listener (files/upload), an in-memory tree, expiring
tokens and the documented 401/409/429 bodies."""

import hashlib
import itertools
import json
import re
import time
import uuid

from werkzeug.wrappers import Response

from .server import FakeServer, json_response, load_fixture

PATH_PATTERN = re.compile(r"^(/(.|[\r\n])*|ns:[0-9]+(/.*)?)$")
RPC_ROUTES = {"files/create_folder_v2", "files/get_metadata",
              "sharing/create_shared_link_with_settings", "sharing/list_shared_links"}
CONTENT_ROUTES = {"files/upload"}


def _text(status: int, message: str) -> Response:
    return Response(message, status=status, content_type="text/plain; charset=utf-8")


def content_hash(data: bytes) -> str:
    """Dropbox's content hash: SHA-256 over the SHA-256 of each 4 MiB block."""
    blocks = [hashlib.sha256(data[i:i + 4 * 1024 * 1024]).digest()
              for i in range(0, len(data), 4 * 1024 * 1024)]
    return hashlib.sha256(b"".join(blocks)).hexdigest()


class FakeDropbox(FakeServer):
    listeners = ("api", "content")

    def __init__(self, *, access_token: str = "sl.u.initial-access-token-0001",
                 refresh_token: str = "refresh-token-0001-secret",
                 app_key: str = "app-key-0001", app_secret: str = "app-secret-0001-secret",
                 token_lifetime: int = 14400):
        super().__init__()
        self.tokens: dict[str, float | None] = {access_token: None}  # token -> expires at
        self.access_token = access_token
        self.refresh_token, self.app_key, self.app_secret = refresh_token, app_key, app_secret
        self.token_lifetime = token_lifetime
        self.entries: dict[str, dict] = {}  # path_lower -> entry
        self.links: dict[str, dict] = {}  # path_lower -> shared link metadata
        self._ids = itertools.count(1)

    @property
    def content_url(self) -> str:
        return self.url_for("content")

    def expire(self, token: str | None = None) -> None:
        self.tokens[token or self.access_token] = time.time() - 1

    def rate_limit(self, *, times: int = 1, retry_after: int = 1, path=None) -> None:
        body = load_fixture("dropbox", "error_429")
        body["error"]["retry_after"] = retry_after
        self.script(429, body, headers={"Retry-After": str(retry_after)}, times=times, path=path)

    # -- dispatch -------------------------------------------------------------------

    def handle(self, request, body, listener):
        if request.path == "/oauth2/token" and listener == "api":
            return self._token(request)
        route = request.path.removeprefix("/2/")
        routes = RPC_ROUTES if listener == "api" else CONTENT_ROUTES
        if request.method != "POST" or route not in routes:
            return _text(404, f"Unknown API function: {route!r}")
        auth = self._auth(request.headers.get("Authorization", ""))
        if auth is not None:
            return auth
        if listener == "content":
            return self._upload(request, body)
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return _text(400, f'Error in call to API function "{route}": Bad HTTP '
                              '"Content-Type" header. Expecting "application/json".')
        try:
            arg = json.loads(body or b"null")
        except ValueError:
            return _text(400, f'Error in call to API function "{route}": request body: '
                              "could not decode input as JSON")
        bad = self._bad_path(route, arg)
        if bad:
            return bad
        handler = getattr(self, "_" + route.split("/")[1])
        return handler(arg)

    def _auth(self, header: str):
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token not in self.tokens:
            return json_response(load_fixture("dropbox", "error_401_invalid"), 401)
        expires = self.tokens[token]
        if expires is not None and time.time() >= expires:
            return json_response(load_fixture("dropbox", "error_401_expired"), 401)
        return None

    def _token(self, request):
        form = request.form
        if form.get("client_id") != self.app_key or form.get("client_secret") != self.app_secret:
            return json_response({"error": "invalid_client",
                                  "error_description": "Invalid client_id or client_secret"}, 400)
        if form.get("grant_type") != "refresh_token" or \
                form.get("refresh_token") != self.refresh_token:
            return json_response(load_fixture("dropbox", "error_invalid_grant"), 400)
        token = f"sl.u.refreshed-{uuid.uuid4().hex}"
        self.tokens[token] = time.time() + self.token_lifetime
        self.access_token = token
        body = load_fixture("dropbox", "token_refresh", token=token)
        body["expires_in"] = self.token_lifetime
        return json_response(body)

    def _bad_path(self, route: str, arg):
        path = arg.get("path") if isinstance(arg, dict) else None
        if not isinstance(path, str) or not PATH_PATTERN.match(path):
            pattern = r"(/(.|[\r\n])*)|(ns:[0-9]+(/.*)?)"
            return _text(400, f'Error in call to API function "{route}": request body: path: '
                              f"{path!r} did not match pattern '{pattern}'")
        return None

    # -- tree helpers ---------------------------------------------------------------

    def _meta(self, entry: dict, *, tagged: bool) -> dict:
        meta = {k: v for k, v in entry.items() if not k.startswith("_")}
        if entry[".tag"] == "folder":
            meta = {k: meta[k] for k in (".tag", "name", "id", "path_lower", "path_display")}
        return meta if tagged else {k: v for k, v in meta.items() if k != ".tag"}

    def _conflict_at(self, path: str) -> str | None:
        """'file'/'folder' if something is at path, 'file_ancestor' if a parent is a file."""
        lower = path.lower()
        if lower in self.entries:
            return self.entries[lower][".tag"]
        parts = lower.split("/")
        for i in range(2, len(parts)):
            parent = self.entries.get("/".join(parts[:i]))
            if parent and parent[".tag"] == "file":
                return "file_ancestor"
        return None

    def _add(self, path: str, tag: str, **fields) -> dict:
        parts = path.split("/")
        for i in range(2, len(parts)):  # parents are created as needed
            parent = "/".join(parts[:i])
            if parent.lower() not in self.entries:
                self._add(parent, "folder")
        entry = {".tag": tag, "name": parts[-1], "id": f"id:fake{next(self._ids):06d}",
                 "path_lower": path.lower(), "path_display": path, **fields}
        self.entries[path.lower()] = entry
        return entry

    # -- routes ---------------------------------------------------------------------

    def _create_folder_v2(self, arg):
        path = arg["path"]
        conflict = self._conflict_at(path)
        if conflict:
            body = load_fixture("dropbox", "error_409_folder_conflict")
            body["error_summary"] = f"path/conflict/{conflict}/.."
            body["error"]["path"]["conflict"][".tag"] = conflict
            return json_response(body, 409)
        return json_response({"metadata": self._meta(self._add(path, "folder"), tagged=False)})

    def _get_metadata(self, arg):
        entry = self.entries.get(arg["path"].lower())
        if entry is None:
            return json_response(load_fixture("dropbox", "error_409_not_found"), 409)
        return json_response(self._meta(entry, tagged=True))

    def _upload(self, request, body):
        if request.headers.get("Content-Type") != "application/octet-stream":
            return _text(400, 'Error in call to API function "files/upload": Bad HTTP '
                              '"Content-Type" header. Expecting "application/octet-stream".')
        raw = request.headers.get("Dropbox-API-Arg", "")
        try:
            raw.encode("ascii")
            arg = json.loads(raw)
        except (UnicodeError, ValueError):
            return _text(400, 'Error in call to API function "files/upload": HTTP header '
                              '"Dropbox-API-Arg": could not decode input as JSON')
        bad = self._bad_path("files/upload", arg)
        if bad:
            return bad
        path, mode = arg["path"], arg.get("mode", "add")
        mode = mode.get(".tag") if isinstance(mode, dict) else mode
        conflict = self._conflict_at(path)
        if conflict and arg.get("autorename") and conflict == "file" and mode == "add":
            path, conflict = self._free_name(path), None
        if conflict and not (conflict == "file" and mode == "overwrite"):
            error = load_fixture("dropbox", "error_409_upload_conflict")
            error["error_summary"] = f"path/conflict/{conflict}/.."
            error["error"]["reason"]["conflict"][".tag"] = conflict
            return json_response(error, 409)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry = self._add(path, "file", client_modified=now, server_modified=now,
                          rev=uuid.uuid4().hex[:12], size=len(body), is_downloadable=True,
                          content_hash=content_hash(body), _content=body)
        return json_response(self._meta(entry, tagged=False))

    def _free_name(self, path: str) -> str:
        stem, dot, ext = path.rpartition(".") if "." in path.rsplit("/", 1)[-1] else (path, "", "")
        for n in itertools.count(1):
            candidate = f"{stem} ({n}){dot}{ext}"
            if candidate.lower() not in self.entries:
                return candidate
        raise AssertionError("unreachable")

    def _create_shared_link_with_settings(self, arg):
        entry = self.entries.get(arg["path"].lower())
        if entry is None:
            return json_response(load_fixture("dropbox", "error_409_not_found"), 409)
        existing = self.links.get(entry["path_lower"])
        if existing:
            body = load_fixture("dropbox", "error_409_shared_link_exists")
            if arg.get("settings"):  # metadata is left out when settings were given
                body["error"] = {".tag": "shared_link_already_exists"}
            else:
                body["error"]["shared_link_already_exists"]["metadata"] = existing
            return json_response(body, 409)
        link = {**self._meta(entry, tagged=True),
                "url": f"https://www.dropbox.com/s/{uuid.uuid4().hex[:15]}/{entry['name']}?dl=0",
                "link_permissions": {"can_revoke": True}}
        self.links[entry["path_lower"]] = link
        return json_response(link)

    def _list_shared_links(self, arg):
        link = self.links.get(arg["path"].lower())
        return json_response({"links": [link] if link else [], "has_more": False})

    def content_of(self, path: str) -> bytes:
        return self.entries[path.lower()]["_content"]
