"""Reliability and security under load and faults.

Most of this suite runs in both CI lanes. Tests marked `requires_services` (load, chaos,
real races between processes) need PostgreSQL and the Redis broker, chosen with
DATABASE_URL and REDIS_URL; tests marked `requires_postgres` (lost connections) need
PostgreSQL only. Without them they skip, saying why. Under CI=true a skip is only allowed
in the SQLite lane, and only while the services are there for the other lane to use;
anything else (a lane configured for the services that cannot reach them, or a CI
machine without them) fails.
"""

import os
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from automation.services.api_auth import api_client_create, tokens_issue
from automation.store import graphs
from automation.triggers import events

DEFAULT_SERVICES = (("PostgreSQL", "127.0.0.1", 5432), ("Redis", "127.0.0.1", 6379))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires_services: needs PostgreSQL and the Redis broker (skipped without "
                   "them; under CI=true only the SQLite lane may skip)")
    config.addinivalue_line(
        "markers", "requires_postgres: needs PostgreSQL (skipped without it; under CI=true "
                   "only the SQLite lane may skip)")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def services_problem(*, redis: bool = True) -> tuple[str, str] | None:
    """None when PostgreSQL (and, with `redis`, the Redis broker) are configured and
    answer; otherwise ("skip" | "fail", reason). "fail" only under CI=true."""
    on_ci = os.environ.get("CI", "").lower() == "true"
    db = settings.DATABASES["default"]
    redis_url = settings.Q_CLUSTER.get("redis") if redis else None
    postgres = db["ENGINE"].endswith(("postgresql", "postgis"))
    if not (postgres and (redis_url or not redis)):
        if redis:
            lane = (f"this run uses {'PostgreSQL' if postgres else 'SQLite'} and the "
                    f"{'Redis' if redis_url else 'ORM'} broker")
            reason = (f"needs PostgreSQL and the Redis broker ({lane}); set DATABASE_URL="
                      f"postgres://... and REDIS_URL=redis://...")
        else:
            reason = "needs PostgreSQL (this run uses SQLite); set DATABASE_URL=postgres://..."
        wanted = DEFAULT_SERVICES if redis else DEFAULT_SERVICES[:1]
        missing = [name for name, host, port in wanted if not _reachable(host, port)]
        if on_ci and missing:
            return "fail", f"{reason}; CI=true but {' and '.join(missing)} is not running here"
        return "skip", reason
    problems = []
    if not _reachable(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)):
        problems.append(f"PostgreSQL at {db.get('HOST')}:{db.get('PORT') or 5432} is not reachable")
    if redis:
        parts = urlsplit(redis_url)
        if not _reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
            problems.append(f"Redis at {parts.hostname}:{parts.port or 6379} is not reachable")
    if problems:
        return ("fail" if on_ci else "skip"), "; ".join(problems)
    return None


def check_services(*, redis: bool = True) -> None:
    problem = services_problem(redis=redis)
    if problem is None:
        return
    verdict, reason = problem
    if verdict == "fail":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Decide before any fixture (the database among them) is set up."""
    if item.get_closest_marker("requires_services"):
        check_services()
    elif item.get_closest_marker("requires_postgres"):
        check_services(redis=False)


@pytest.fixture
def requires_services():
    check_services()


@pytest.fixture(autouse=True)
def _fresh_api_caches():
    """Throttle counters and cached graphs must not leak between tests (ids are reused
    when the test database is flushed)."""
    cache.clear()
    graphs._graph.cache_clear()
    events.invalidate()
    yield
    cache.clear()
    graphs._graph.cache_clear()
    events.invalidate()


@pytest.fixture
def case_type(db):
    """The built-in Case type, as its migration makes it (tests.factories.migration_rows)."""
    from tests.factories import migration_rows

    migration_rows("case_type")


@pytest.fixture
def client_and_secret():
    return api_client_create(name="Reliability suite", rate_limit_per_minute=0)


@pytest.fixture
def tokens(client_and_secret):
    return tokens_issue(client=client_and_secret[0])


@pytest.fixture
def api(tokens):
    """An API client (bearer token) that answers 500s instead of raising them."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
    return client


@pytest.fixture
def queued(settings, monkeypatch):
    """Steps are queued, not run: doorbells are collected instead of being sent."""
    from automation.store import doorbell

    rung: list[int] = []
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(doorbell, "send_step", lambda step_run_id, **kw: rung.append(step_run_id))
    return rung
