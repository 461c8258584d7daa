import json
import time

import pytest
from fakes.server import load_fixture

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConflictError,
    ConnectorRateLimitedError,
    ConnectorRequestError,
    OutboundBlockedError,
)


def test_create_folder_then_exist_ok(dropbox, dropbox_fake):
    first = dropbox.run("create_folder", {"path": "/Clients/Acme"})
    assert first.output["created"] is True
    assert first.output["path"] == "/Clients/Acme"
    assert first.external_links[0]["objectType"] == "folder"
    assert first.external_links[0]["externalId"].startswith("id:")
    again = dropbox.run("create_folder", {"path": "/clients/acme"})
    assert again.output["created"] is False and again.output["id"] == first.output["id"]
    assert dropbox_fake.count("/2/files/get_metadata") == 1


def test_create_folder_conflict_message(dropbox, dropbox_fake):
    dropbox.run("create_folder", {"path": "/Clients/Acme"})
    with pytest.raises(ConnectorConflictError) as exc:
        dropbox.run("create_folder", {"path": "/Clients/Acme", "existOk": False})
    assert str(exc.value) == "Dropbox: a folder already exists at /Clients/Acme " \
                             "(path/conflict/folder)"
    assert not exc.value.retryable and exc.value.upstream_status == 409


def test_create_folder_over_a_file_is_a_conflict(dropbox):
    dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "{}"})
    with pytest.raises(ConnectorConflictError, match=r"a file already exists at /orders/A-1.json"):
        dropbox.run("create_folder", {"path": "/orders/A-1.json"})
    with pytest.raises(ConnectorConflictError, match=r"a parent of /orders/A-1.json/x is a file "
                                                     r"\(path/conflict/file_ancestor\)"):
        dropbox.run("create_folder", {"path": "/orders/A-1.json/x"})


def test_upload_text_and_json_content(dropbox, dropbox_fake):
    text = dropbox.run("upload_file", {"path": "/orders/A-1.csv", "content": "id,total\n1,10\n"})
    assert dropbox_fake.content_of("/orders/A-1.csv") == b"id,total\n1,10\n"
    assert text.output["size"] == 14 and text.output["created"] is True
    dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": {"total": 10}})
    assert json.loads(dropbox_fake.content_of("/orders/A-1.json")) == {"total": 10}
    upload = next(c for c in dropbox_fake.calls if c.path == "/2/files/upload")
    assert upload.listener == "content"
    assert upload.headers["Content-Type"] == "application/octet-stream"
    assert json.loads(upload.headers["Dropbox-Api-Arg"]) == {
        "path": "/orders/A-1.csv", "mode": "add", "autorename": False, "mute": False}
    assert dropbox_fake.count(listener="api", path="/2/files/upload") == 0


def test_upload_conflict_overwrite_and_autorename(dropbox, dropbox_fake):
    first = dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "1"})
    with pytest.raises(ConnectorConflictError) as exc:
        dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "2"})
    assert str(exc.value) == "Dropbox: a file already exists at /orders/A-1.json " \
                             "(path/conflict/file)"
    second = dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "2",
                                         "mode": "overwrite"})
    assert second.output["rev"] != first.output["rev"]
    assert dropbox_fake.content_of("/orders/A-1.json") == b"2"
    renamed = dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "3",
                                          "autorename": True})
    assert renamed.output["path"] == "/orders/A-1 (1).json"


def test_non_ascii_paths_are_header_safe(dropbox, dropbox_fake):
    result = dropbox.run("upload_file", {"path": "/Kunder/Åsa Öberg.txt", "content": "hej"})
    assert result.output["path"] == "/Kunder/Åsa Öberg.txt"
    upload = next(c for c in dropbox_fake.calls if c.path == "/2/files/upload")
    assert "\\u00c5sa" in upload.headers["Dropbox-Api-Arg"]


def test_upload_from_content_url(dropbox, dropbox_fake, echo_server):
    result = dropbox.run("upload_file", {"path": "/copies/page.txt",
                                         "contentUrl": echo_server.url + "/text"})
    assert dropbox_fake.content_of("/copies/page.txt") == b"plain text body"
    assert result.output["size"] == 15
    fetch = echo_server.calls[0]
    assert "Authorization" not in fetch.headers  # the Dropbox token stays with Dropbox


def test_content_url_goes_through_the_ssrf_guard(dropbox, dropbox_fake):
    with pytest.raises(OutboundBlockedError, match="169.254.169.254"):
        dropbox.run("upload_file", {"path": "/x.txt",
                                    "contentUrl": "http://169.254.169.254/latest/meta-data/"})
    assert dropbox_fake.count("/2/files/upload") == 0


def test_content_url_size_cap(dropbox, dropbox_fake, echo_server, override):
    override(DROPBOX_MAX_UPLOAD_BYTES=100)
    with pytest.raises(ConnectorRequestError, match="larger than 100 bytes"):
        dropbox.run("upload_file", {"path": "/big.bin",
                                    "contentUrl": echo_server.url + "/big?bytes=1000"})
    with pytest.raises(ConnectorRequestError, match="HTTP 404"):
        dropbox.run("upload_file", {"path": "/big.bin",
                                    "contentUrl": echo_server.url + "/status/404"})
    assert dropbox_fake.count("/2/files/upload") == 0


def test_shared_link_create_then_existing(dropbox, dropbox_fake):
    dropbox.run("upload_file", {"path": "/orders/A-1.json", "content": "{}"})
    first = dropbox.run("create_shared_link", {"path": "/orders/A-1.json"})
    assert first.output["url"].startswith("https://www.dropbox.com/s/")
    assert first.output["existing"] is False
    assert first.external_links[0]["url"] == first.output["url"]
    again = dropbox.run("create_shared_link", {"path": "/orders/A-1.json"})
    assert again.output["url"] == first.output["url"] and again.output["existing"] is True
    assert dropbox_fake.count("/2/sharing/list_shared_links") == 0


def test_shared_link_exists_without_metadata_falls_back_to_listing(dropbox, dropbox_fake):
    dropbox.run("upload_file", {"path": "/a.txt", "content": "a"})
    settings = {"audience": "public", "access": "viewer"}
    first = dropbox.run("create_shared_link", {"path": "/a.txt", "settings": settings})
    again = dropbox.run("create_shared_link", {"path": "/a.txt", "settings": settings})
    assert again.output["url"] == first.output["url"]
    assert dropbox_fake.count("/2/sharing/list_shared_links") == 1


def test_shared_link_for_a_missing_path(dropbox):
    with pytest.raises(ConnectorRequestError) as exc:
        dropbox.run("create_shared_link", {"path": "/nope.txt"})
    assert str(exc.value) == "Dropbox: nothing exists at /nope.txt (path/not_found)"


def test_expired_token_is_refreshed_once_and_reported(dropbox, dropbox_fake):
    old = dropbox_fake.access_token
    dropbox_fake.expire(old)
    result = dropbox.run("create_folder", {"path": "/Clients"})
    assert result.output["created"] is True
    new = result.updated_credentials["accessToken"]
    assert new != old and new == dropbox_fake.access_token
    assert result.updated_credentials["expiresAt"] > time.time() + 14000
    token_call = next(c for c in dropbox_fake.calls if c.path == "/oauth2/token")
    assert token_call.listener == "api"
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(pair.split("=") for pair in token_call.body.decode().split("&")) == {
        "grant_type": "refresh_token", "refresh_token": dropbox_fake.refresh_token,
        "client_id": dropbox_fake.app_key, "client_secret": dropbox_fake.app_secret}
    assert [c.path for c in dropbox_fake.calls] == [
        "/2/files/create_folder_v2", "/oauth2/token", "/2/files/create_folder_v2"]


def test_refresh_happens_only_once(dropbox, dropbox_fake):
    dropbox_fake.token_lifetime = -10  # every new token is already expired
    dropbox_fake.expire()
    with pytest.raises(ConnectorAuthError, match="expired_access_token"):
        dropbox.run("create_folder", {"path": "/Clients"})
    assert dropbox_fake.count("/oauth2/token") == 1


def test_known_expiry_is_refreshed_before_the_call(dropbox_fake, dropbox_credentials, connect):
    creds = {**dropbox_credentials, "expiresAt": int(time.time()) + 60}  # within the buffer
    connector = connect("dropbox", creds, dropbox_fake.url,
                        {"contentBaseUrl": dropbox_fake.content_url})
    result = connector.run("create_folder", {"path": "/Early"})
    assert [c.path for c in dropbox_fake.calls] == ["/oauth2/token", "/2/files/create_folder_v2"]
    assert result.updated_credentials["accessToken"] == dropbox_fake.access_token


def test_refresh_failure_is_an_auth_error_without_secrets(dropbox, dropbox_fake):
    dropbox_fake.expire()
    dropbox_fake.refresh_token = "revoked"
    with pytest.raises(ConnectorAuthError) as exc:
        dropbox.run("create_folder", {"path": "/Clients"})
    assert str(exc.value) == ("Dropbox refused to refresh the access token (400 invalid_grant: "
                              "refresh token is invalid or revoked).")
    assert not exc.value.retryable


def test_expired_token_without_refresh_credentials(dropbox_fake, connect):
    dropbox_fake.expire()
    connector = connect("dropbox", {"accessToken": dropbox_fake.access_token}, dropbox_fake.url)
    with pytest.raises(ConnectorAuthError, match="no refreshToken"):
        connector.run("create_folder", {"path": "/Clients"})


def test_invalid_token_fails_at_once(dropbox_fake, connect):
    connector = connect("dropbox", {"accessToken": "sl.bogus-token-1234", "refreshToken": "x",
                                    "appKey": "k", "appSecret": "s"}, dropbox_fake.url)
    with pytest.raises(ConnectorAuthError) as exc:
        connector.run("create_folder", {"path": "/Clients"})
    assert str(exc.value) == "Dropbox rejected the access token (401 invalid_access_token)."
    assert dropbox_fake.count() == 1


def test_missing_scope_is_named(dropbox, dropbox_fake):
    dropbox_fake.script(401, load_fixture("dropbox", "error_401_missing_scope"))
    with pytest.raises(ConnectorAuthError, match="required scope files.content.write"):
        dropbox.run("create_folder", {"path": "/Clients"})
    assert dropbox_fake.count("/oauth2/token") == 0


def test_429_body_retry_after_is_honoured(dropbox, dropbox_fake, sleeps):
    dropbox_fake.rate_limit(retry_after=3, path="/2/files/upload")
    dropbox.run("upload_file", {"path": "/a.txt", "content": "a"})
    assert sleeps == [3.0]
    assert dropbox_fake.count("/2/files/upload") == 2


def test_429_beyond_the_bound_is_reported(dropbox, dropbox_fake, sleeps):
    dropbox_fake.rate_limit(retry_after=1, times=5)
    with pytest.raises(ConnectorRateLimitedError) as exc:
        dropbox.run("create_folder", {"path": "/x"})
    assert sleeps == [1.0, 1.0, 1.0] and exc.value.retry_after == 1.0
    assert "too_many_write_operations" in str(exc.value)


def test_plain_text_400_is_a_request_error(dropbox):
    with pytest.raises(ConnectorRequestError, match="did not match pattern"):
        dropbox.run("create_folder", {"path": "no-leading-slash"})


def test_test_connection(dropbox):
    assert dropbox.test_connection() == {"ok": True}


def test_params_validation(dropbox):
    from integrations.dropbox import DropboxConnector

    assert DropboxConnector.validate_params("upload_file", {"path": "/a"}) == {
        "params": ["give content or contentUrl"]}
    assert DropboxConnector.validate_params("upload_file", {"path": "/a", "content": "x",
                                                            "mode": "update"}) == {
        "mode": ["must be one of 'add', 'overwrite'"]}


def test_refreshed_token_survives_a_failed_action(dropbox, dropbox_fake):
    dropbox.run("create_folder", {"path": "/Clients"})
    dropbox_fake.expire()
    with pytest.raises(ConnectorConflictError) as exc:
        dropbox.run("create_folder", {"path": "/Clients", "existOk": False})
    assert exc.value.updated_credentials["accessToken"] == dropbox_fake.access_token
