import uuid

import pytest

from integrations.exceptions import (
    ConnectorConfigError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)
from integrations.signing import verify
from integrations.webhook import webhook_post


def test_webhook_post_is_signed(echo_server, connect):
    hook = connect("webhook", {"secret": "whsec_abc123"})
    result = hook.run("post", {"url": echo_server.url + "/hooks", "event": "workflow.completed",
                               "payload": {"event": "workflow.completed", "id": "run-1",
                                           "status": "completed"}})
    assert result.output["status"] == 200
    call = echo_server.calls[0]
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Entityflow-Event"] == "workflow.completed"
    assert call.headers["X-Entityflow-Delivery"] == result.output["deliveryId"]
    uuid.UUID(result.output["deliveryId"])
    verify("whsec_abc123", call.body, call.headers["X-Entityflow-Signature"])
    assert call.body == b'{"event":"workflow.completed","id":"run-1","status":"completed"}'


def test_webhook_delivery_id_from_param_or_idempotency_key(echo_server, connect):
    hook = connect("webhook", {"secret": "s3cret-value"}, idempotency_key="run-1:step-2:1")
    a = hook.run("post", {"url": echo_server.url, "payload": {}}).output["deliveryId"]
    b = hook.run("post", {"url": echo_server.url, "payload": {}}).output["deliveryId"]
    assert a == b
    c = hook.run("post", {"url": echo_server.url, "payload": {}, "deliveryId": "d-1"})
    assert c.output["deliveryId"] == "d-1"


def test_webhook_failures(echo_server, connect):
    hook = connect("webhook", {"secret": "s3cret-value"})
    with pytest.raises(ConnectorUnavailableError) as exc:
        hook.run("post", {"url": echo_server.url + "/status/502", "payload": {}})
    assert exc.value.retryable
    with pytest.raises(ConnectorRequestError, match="redirects are not followed"):
        hook.run("post", {"url": echo_server.url + "/redirect?to=/x", "payload": {}})
    assert echo_server.count(path="/x") == 0
    with pytest.raises(ConnectorConfigError, match="signing secret"):
        connect("webhook", {}).run("post", {"url": echo_server.url, "payload": {}})


def test_webhook_post_helper(echo_server):
    result = webhook_post(echo_server.url + "/in", {"a": 1}, "sec-1", delivery_id="d-9",
                          event="approval.requested")
    assert result["deliveryId"] == "d-9" and result["status"] == 200
    call = echo_server.calls[0]
    verify("sec-1", call.body, call.headers["X-Entityflow-Signature"])


def test_test_connection_sends_a_signed_ping(echo_server, connect):
    hook = connect("webhook", {"secret": "s3cret-value"}, echo_server.url + "/hooks")
    assert hook.test_connection() == {"ok": True, "status": 200}
    call = echo_server.calls[0]
    assert call.headers["X-Entityflow-Event"] == "ping"
    verify("s3cret-value", call.body, call.headers["X-Entityflow-Signature"])
