"""Raw secrets never appear in error messages, even when a vendor echoes them."""

import base64

import pytest

from integrations.exceptions import ConnectorError


def _assert_clean(err: ConnectorError, *secrets: str) -> None:
    text = f"{err} {err!r} {err.message}"
    for secret in secrets:
        assert secret not in text, f"secret leaked into: {text}"
    assert "[redacted]" in text


def test_hubspot_echoed_token(hubspot, hubspot_fake):
    hubspot_fake.script(400, {"status": "error", "category": "VALIDATION_ERROR",
                              "message": f"token {hubspot_fake.token} is not valid here",
                              "correlationId": "c"})
    with pytest.raises(ConnectorError) as exc:
        hubspot.run("upsert_contact", {"email": "a@b.example"})
    _assert_clean(exc.value, hubspot_fake.token)


def test_dropbox_echoed_token_and_app_secret(dropbox, dropbox_fake):
    dropbox_fake.script(400, f"bad token {dropbox_fake.access_token} / {dropbox_fake.app_secret}",
                        content_type="text/plain")
    with pytest.raises(ConnectorError) as exc:
        dropbox.run("create_folder", {"path": "/x"})
    _assert_clean(exc.value, dropbox_fake.access_token, dropbox_fake.app_secret)


def test_dropbox_refresh_error_echoing_the_refresh_token(dropbox, dropbox_fake):
    dropbox_fake.expire()
    dropbox_fake.script(400, {"error": "invalid_grant",
                              "error_description": f"{dropbox_fake.refresh_token} is revoked"},
                        path="/oauth2/token")
    with pytest.raises(ConnectorError) as exc:
        dropbox.run("create_folder", {"path": "/x"})
    _assert_clean(exc.value, dropbox_fake.refresh_token)


def test_openai_echoed_key(openai, openai_fake):
    openai_fake.script(401, {"error": {"message": f"Incorrect API key provided: "
                                       f"{openai_fake.api_key}.", "type": "invalid_request_error",
                                       "param": None, "code": "invalid_api_key"}})
    with pytest.raises(ConnectorError) as exc:
        openai.run("chat_json", {"input": {}})
    _assert_clean(exc.value, openai_fake.api_key)


@pytest.mark.parametrize("credentials,leaked", [
    ({"token": "bearer-secret-123"}, ["bearer-secret-123"]),
    ({"username": "user", "password": "basic-pass-456"},
     ["basic-pass-456", base64.b64encode(b"user:basic-pass-456").decode()]),
    ({"apiKey": "api-key-789"}, ["api-key-789"]),
])
def test_http_server_echoing_credentials(echo_server, connect, credentials, leaked):
    with pytest.raises(ConnectorError) as exc:
        connect("http", credentials).run("request", {"url": echo_server.url + "/status/403"})
    _assert_clean(exc.value, *leaked)


def test_webhook_secret_from_params(echo_server, connect):
    echo_server.script(500, {"you sent": "param-secret-1"})
    with pytest.raises(ConnectorError) as exc:
        connect("webhook", {}).run("post", {"url": echo_server.url, "payload": {},
                                            "secret": "param-secret-1"})
    _assert_clean(exc.value, "param-secret-1")


def test_secret_values_lists_every_credential_string(connect):
    connector = connect("dropbox", {"accessToken": "aaaa-1", "refreshToken": "bbbb-2",
                                    "appKey": "cccc-3", "appSecret": "dddd-4",
                                    "nested": {"x": ["eeee-5"]}, "expiresAt": 123})
    assert sorted(connector.secret_values()) == ["aaaa-1", "bbbb-2", "cccc-3", "dddd-4",
                                                 "eeee-5"]


def test_shape_keys_are_not_treated_as_secrets(connect):
    connector = connect("http", {"type": "bearer", "token": "tok-abcdef",
                                 "apiKeyHeader": "X-Api-Key"})
    assert connector.secret_values() == ["tok-abcdef"]
