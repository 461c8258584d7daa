"""Dropbox error bodies → ConnectorError subclasses with messages people can act on.

Dropbox nests union tags (`{".tag": "path", "path": {".tag": "conflict", ...}}`) and
pads `error_summary` with a variable run of dots, so we walk the `.tag` chain and
match on whole tags, never on the literal summary text (VENDORS §2.7).
"""

import json

import requests

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)

# (tag prefix, error class, message); the first whole-tag prefix match wins.
_KNOWN: list[tuple[str, type[ConnectorError], str]] = [
    ("path/conflict/file_ancestor", ConnectorConflictError, "a parent of {path} is a file"),
    ("path/conflict/file", ConnectorConflictError, "a file already exists at {path}"),
    ("path/conflict/folder", ConnectorConflictError, "a folder already exists at {path}"),
    ("path/conflict", ConnectorConflictError, "something already exists at {path}"),
    ("path/not_found", ConnectorRequestError, "nothing exists at {path}"),
    ("path/not_file", ConnectorRequestError, "{path} is not a file"),
    ("path/not_folder", ConnectorRequestError, "{path} is not a folder"),
    ("path/malformed_path", ConnectorRequestError, "{path} is not a valid Dropbox path"),
    ("path/no_write_permission", ConnectorRequestError, "no permission to write to {path}"),
    ("path/insufficient_space", ConnectorRequestError, "the Dropbox account is out of space"),
    ("path/disallowed_name", ConnectorRequestError, "the name {path} is not allowed"),
    ("path/too_many_write_operations", ConnectorRateLimitedError,
     "too many writes at once under {path}"),
    ("shared_link_already_exists", ConnectorConflictError,
     "a shared link already exists for {path}"),
    ("email_not_verified", ConnectorRequestError, "the account's email is not verified"),
    ("payload_too_large", ConnectorRequestError, "{path} is too large for a single upload"),
    ("content_hash_mismatch", ConnectorRequestError, "the upload of {path} was corrupted"),
]


def tag_path(error: dict | None) -> list[str]:
    """["path", "conflict", "file"] for the nested union in a Dropbox error body."""
    tags: list[str] = []
    node = error
    while isinstance(node, dict) and isinstance(node.get(".tag"), str):
        tag = node[".tag"]
        tags.append(tag)
        child = node.get(tag)
        if not isinstance(child, dict):  # struct members are inlined next to .tag
            child = next((v for k, v in node.items()
                          if k != ".tag" and isinstance(v, dict) and ".tag" in v), None)
        node = child
    return tags


def has_tags(err: ConnectorError, prefix: str) -> bool:
    """Whole-tag prefix match on the tag path kept in `err.vendor_code`."""
    tags, wanted = (err.vendor_code or "").split("/"), prefix.split("/")
    return tags[: len(wanted)] == wanted


def describe_error(tags: list[str], path: str | None) -> tuple[type[ConnectorError], str]:
    for prefix, cls, text in _KNOWN:
        wanted = prefix.split("/")
        if tags[: len(wanted)] == wanted:
            return cls, text.format(path=path or "that path")
    return ConnectorRequestError, f"the request for {path or 'that path'} failed"


def _request_path(req: requests.PreparedRequest | None) -> str | None:
    """The `path` argument we sent, from the JSON body or the Dropbox-API-Arg header."""
    if req is None:
        return None
    raw = req.headers.get("Dropbox-API-Arg") or req.body
    try:
        arg = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return arg.get("path") if isinstance(arg, dict) else None


def error_for_response(resp: requests.Response, *, retry_after: float | None,
                       fallback_message: str) -> ConnectorError:
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    tags = tag_path(error) if isinstance(error, dict) else []
    if not tags and isinstance(body, dict) and isinstance(body.get("error_summary"), str):
        tags = [t for t in body["error_summary"].rstrip("./").split("/") if t]
    summary = "/".join(tags)
    kwargs = {"upstream_status": status, "vendor_code": summary or None}
    if status == 401:
        scope = error.get("required_scope") if isinstance(error, dict) else None
        extra = f", required scope {scope}" if scope else ""
        return ConnectorAuthError(
            f"Dropbox rejected the access token (401 {summary or 'unauthorized'}{extra}).",
            **kwargs)
    if status == 403:
        return ConnectorAuthError(f"Dropbox refused access (403 {summary or 'forbidden'}).",
                                  **kwargs)
    if status == 409:
        cls, text = describe_error(tags, _request_path(resp.request))
        err = cls(f"Dropbox: {text} ({summary or 'conflict'})", **kwargs)
        err.dropbox_error = error if isinstance(error, dict) else {}
        return err
    if status == 429:
        return ConnectorRateLimitedError(
            f"Dropbox is rate limiting requests (429 {summary or 'too_many_requests'}).",
            retry_after=retry_after, **kwargs)
    if status >= 500:
        return ConnectorUnavailableError(f"Dropbox failed ({status}).", **kwargs)
    return ConnectorRequestError(
        f"Dropbox rejected the request ({status}): {fallback_message}", **kwargs)
