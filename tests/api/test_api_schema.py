"""Property-based run of every operation in /api/schema/ (schemathesis): no 5xx, and every
documented response matches its schema. Bounded: a few examples per operation."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from automation.services.api_auth import api_client_create, tokens_issue
from tests.api.support import API_DB

schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())


@pytest.fixture
def bearer():
    client, _ = api_client_create(name="Schemathesis", rate_limit_per_minute=0)
    return {"Authorization": f"Bearer {tokens_issue(client=client)['accessToken']}"}


def test_the_schema_documents_every_operation():
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    assert all(op.definition.raw.get("operationId") for op in operations)


@API_DB
@schema.parametrize()
@settings(max_examples=6, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api_operation(case, bearer):
    case.call_and_validate(headers=bearer,
                           checks=[not_a_server_error, response_schema_conformance])
