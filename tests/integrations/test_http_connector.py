import base64

import pytest

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConfigError,
    ConnectorRateLimitedError,
    ConnectorRequestError,
    ConnectorUnavailableError,
    OutboundBlockedError,
)
from integrations.http import HttpConnector


def test_get_with_bearer_token(echo_server, connect):
    http = connect("http", {"token": "tok-123456"})
    result = http.run("request", {"url": echo_server.url + "/orders/1", "params": {"a": "b"}})
    out = result.output
    assert out["status"] == 200 and out["truncated"] is False
    assert out["body"]["path"] == "/orders/1" and out["body"]["args"] == {"a": "b"}
    assert out["body"]["headers"]["Authorization"] == "Bearer tok-123456"
    assert out["headers"]["x-request-id"] == "req-1"
    assert "set-cookie" not in out["headers"]  # only a safe subset of headers comes back


def test_post_json_with_basic_auth_and_relative_url(echo_server, connect):
    http = connect("http", {"username": "u", "password": "p4ss"}, echo_server.url + "/api")
    out = http.run("request", {"method": "post", "url": "orders", "json": {"total": 10},
                               "headers": {"X-Trace": "1"}}).output
    assert out["body"]["method"] == "POST" and out["body"]["path"] == "/api/orders"
    assert out["body"]["body"] == '{"total": 10}'
    assert out["body"]["headers"]["Authorization"] == "Basic " + base64.b64encode(
        b"u:p4ss").decode()
    assert out["body"]["headers"]["X-Trace"] == "1"


def test_api_key_header_and_text_body(echo_server, connect):
    http = connect("http", {"apiKey": "k-987654", "apiKeyHeader": "X-Api-Token"})
    out = http.run("request", {"url": echo_server.url + "/text"}).output
    assert out["body"] == "plain text body"
    assert out["headers"]["etag"] == '"abc"' and "x-secret-internal" not in out["headers"]
    assert echo_server.calls[0].headers["X-Api-Token"] == "k-987654"


def test_response_size_cap(echo_server, connect, override):
    override(ENTITYFLOW_HTTP_MAX_RESPONSE_BYTES=100)
    out = connect("http", {}).run("request", {"url": echo_server.url + "/big?bytes=1000"}).output
    assert out["truncated"] is True and len(out["body"]) == 100


@pytest.mark.parametrize("status,error", [
    (400, ConnectorRequestError), (401, ConnectorAuthError), (404, ConnectorRequestError),
    (429, ConnectorRateLimitedError), (500, ConnectorUnavailableError),
    (503, ConnectorUnavailableError)])
def test_error_statuses_map_to_errors(echo_server, connect, status, error):
    with pytest.raises(error) as exc:
        connect("http", {}).run("request", {"url": f"{echo_server.url}/status/{status}"})
    assert str(exc.value).startswith(f"GET 127.0.0.1/status/{status}")
    assert exc.value.upstream_status == status


def test_expect_status(echo_server, connect):
    http = connect("http", {})
    out = http.run("request", {"url": echo_server.url + "/status/404", "expectStatus": [200, 404]})
    assert out.output["status"] == 404
    with pytest.raises(ConnectorRequestError, match="returned 200 \\(expected 201\\)"):
        http.run("request", {"url": echo_server.url + "/ok", "expectStatus": 201})


def test_blocked_and_timed_out_requests(echo_server, connect, override):
    http = connect("http", {})
    with pytest.raises(OutboundBlockedError):
        http.run("request", {"url": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(ConnectorUnavailableError, match="did not answer in time"):
        http.run("request", {"url": echo_server.url + "/slow?seconds=1", "timeout": 0.2})
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=[])
    with pytest.raises(OutboundBlockedError):
        http.run("request", {"url": echo_server.url + "/ok"})
    assert echo_server.count(path="/ok") == 0


def test_redirect_to_internal_address_is_refused(echo_server, connect):
    with pytest.raises(OutboundBlockedError, match="169.254.169.254"):
        connect("http", {"token": "t-1234"}).run("request", {
            "url": echo_server.url + "/redirect?to=http://169.254.169.254/"})


def test_params_schema():
    assert HttpConnector.validate_params("request", {"url": "x", "method": "BREW"}) == {
        "method": ["must be one of " + ", ".join(
            repr(m) for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get",
                              "post", "put", "patch", "delete", "head", "options"])]}
    assert HttpConnector.validate_params("request", {"url": "x", "expectStatus": [99]}) == {
        "expectStatus[0]": ["must be at least 100"]}


def test_unknown_credential_type(echo_server, connect):
    with pytest.raises(ConnectorConfigError):
        connect("http", {"type": "oauth1"}).run("request", {"url": echo_server.url})
