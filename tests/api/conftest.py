"""Fixtures for the REST API tests.

API tests run with real commits (transaction=True): runs start and steps execute in
`on_commit` callbacks, as in production (steps run synchronously in test settings).
A transactional test empties the tables after it, so what the data migrations create
(the Case type, the sweeper schedule) is made again before each test. (Not with
`serialized_rollback`: it reloads the content types with the ids they had at setup, and
fails as soon as a transactional test without it, from another folder, made them again.)
"""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from automation.models import Function
from automation.services.api_auth import api_client_create, tokens_issue
from automation.services.processes import process_save
from automation.store import graphs
from automation.triggers import events
from tests.factories import migration_rows


@pytest.fixture(autouse=True)
def _migration_rows(request):
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("_django_db_helper")
    migration_rows()


@pytest.fixture(autouse=True)
def _fresh_api_caches():
    """Besides the root conftest's caches: throttle counters live in Django's cache, and
    graphs are cached by version id, which a rolled-back or flushed test database hands
    out again."""
    cache.clear()
    graphs._graph.cache_clear()
    events.invalidate()
    yield
    cache.clear()
    graphs._graph.cache_clear()
    events.invalidate()


@pytest.fixture
def client_and_secret():
    return api_client_create(name="Test system")


@pytest.fixture
def api_client_row(client_and_secret):
    return client_and_secret[0]


@pytest.fixture
def tokens(api_client_row):
    return tokens_issue(client=api_client_row)


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def api(tokens):
    """An HTTP client authenticated as an API client (bearer token)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
    return client


@pytest.fixture
def staff_user():
    return get_user_model().objects.create_user(
        "manager", email="manager@example.com", password="pw-123456", is_staff=True)


@pytest.fixture
def staff(staff_user):
    """An HTTP client logged in as a staff user (session; CSRF checks on)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    return client


@pytest.fixture
def greeting_process():
    """A case process made of built-in transform functions."""
    Function.objects.create(name="greet", action="transform", config={"output": {
        "greeting": "'Hello ' + case.firstName", "amount": "parameters.amount"}})
    Function.objects.create(name="double", action="transform", config={"output": {
        "greeting": "result.greeting", "amount": "result.amount * 2"}})
    return process_save(slug="greet-case", name="Greet case", definition={"steps": [
        {"id": "greet", "type": "function", "function": "greet", "next": "double"},
        {"id": "double", "type": "function", "function": "double"}], "triggers": []})
