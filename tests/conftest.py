"""Fixtures shared by every test package.

Service lanes (PostgreSQL, Redis, a running qcluster) get their own fixtures in a
section below when the integration tests need them.
"""

import pytest

from entities import outbox
from entities.demo import order_type_ensure

DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences",
               "django_db_serialized_rollback", "live_server"}


def pytest_collection_modifyitems(items):
    """Every test that uses the database may use every database: on SQLite the task
    queue has a file of its own (config/queue.py), which sync-mode tasks, schedules and
    doorbells write. So both test files are created, and flushed after each test."""
    from django.conf import settings

    if len(settings.DATABASES) < 2:
        return
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None and not DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            continue
        if marker is not None and marker.kwargs.get("databases"):
            continue
        kwargs = {**(marker.kwargs if marker else {}), "databases": "__all__"}
        item.add_marker(pytest.mark.django_db(*(marker.args if marker else ()), **kwargs),
                        append=False)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Databases are flushed between tests; caches that live in the process must not
    carry one test's processes or rules into the next."""
    from automation.functions import catalog
    from automation.store import graphs, pauses
    from automation.triggers import events
    from entities import requirements

    events.invalidate()
    catalog.invalidate()
    pauses.forget()
    requirements._cache.clear()
    # Graphs are cached by version id, which a rolled-back test hands out again (in
    # production ids are never reused: AUTOINCREMENT on SQLite, sequences elsewhere).
    # Every cache of the module, so one added later cannot carry a test's rule into the
    # next (a concurrency rule did: explain then saw another test's process).
    for cached in vars(graphs).values():
        if callable(getattr(cached, "cache_clear", None)):
            cached.cache_clear()
    yield


@pytest.fixture
def order_type(db):
    """The demo `order` type: received → approved (needs email and total) → shipped."""
    return order_type_ensure()


@pytest.fixture
def hubspot_fake():
    """The fake HubSpot on 127.0.0.1 (tests/integrations/fakes), for one test."""
    from tests.integrations.fakes.hubspot import FakeHubSpot

    fake = FakeHubSpot().start()
    yield fake
    fake.stop()


@pytest.fixture
def dropbox_fake():
    """The fake Dropbox on 127.0.0.1 (tests/integrations/fakes), for one test."""
    from tests.integrations.fakes.dropbox import FakeDropbox

    fake = FakeDropbox().start()
    yield fake
    fake.stop()


@pytest.fixture
def dispatched_events():
    """Records every event the outbox hands to subscribers while the test runs."""
    calls = []
    outbox.subscribe("tests.recorder", calls.append)
    yield calls
    outbox.unsubscribe("tests.recorder")


@pytest.fixture
def trace_spans():
    """Tracing on in this process for one test, its spans kept by the SDK's in-memory
    exporter (integrations.tracing); off again afterwards."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from integrations import tracing

    exporter = InMemorySpanExporter()
    tracing.configure(exporter)
    yield exporter
    tracing.shutdown()


# --- Service lanes (PostgreSQL / Redis / workers) ---------------------------------------


@pytest.fixture
def effects(tmp_path, monkeypatch):
    """The file the test worker functions (tests/automation/worker_functions.py) append
    each side effect to, so a test can count them across worker processes."""
    import tests.automation.worker_functions  # noqa: F401  (registers them here too)

    path = tmp_path / "effects.log"
    path.touch()
    monkeypatch.setenv("ENTITYFLOW_TEST_EFFECTS", str(path))
    return path


@pytest.fixture
def queued_mode(settings):
    """Steps go to the broker, as in production (no worker unless the test starts one)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
