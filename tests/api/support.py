"""Shared test data and assertions for the API tests."""

import pytest
from rest_framework.test import APIClient

from automation.services.api_auth import tokens_issue

API_DB = pytest.mark.django_db(transaction=True)

# The definition shape of docs/user-guide/processes.md, verbatim.
APPROVE_PURCHASE = {
    "name": "Approve Purchase",
    "steps": [
        {"id": "calculate", "name": "Calculate", "type": "function", "function": "calculate-total",
         "next": "check"},
        {"id": "check", "type": "condition", "condition": "result.total > 10000",
         "next": "require-approval", "config": {"else": "auto-approve"}},
        {"id": "require-approval", "type": "human", "next": "finalize",
         "config": {"approvers": ["manager@example.com"], "timeout": 86400000,
                    "requiredApprovals": 1}},
        {"id": "auto-approve", "type": "function", "function": "approve-purchase",
         "next": "finalize"},
        {"id": "finalize", "type": "function", "function": "finalize-purchase"}],
    "triggers": [{"type": "event", "config": {"eventType": "purchase.created"},
                  "condition": "event.data.total > 0"}],
}
PURCHASE_FUNCTIONS = [
    {"name": "calculate-total", "action": "transform",
     "config": {"output": {"total": "input.total"}}},
    {"name": "approve-purchase", "action": "transform",
     "config": {"output": {"approved": "true", "by": "'auto'"}}},
    {"name": "finalize-purchase", "action": "transform",
     "config": {"output": {"finalized": "true", "total": "steps.calculate.output.total"}}},
]



def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error format of docs/rest-api.md."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["fields"], dict)
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def bearer_client(api_client_row) -> APIClient:
    """An HTTP client holding a fresh access token of `api_client_row`."""
    client = APIClient()
    token = tokens_issue(client=api_client_row)["accessToken"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
