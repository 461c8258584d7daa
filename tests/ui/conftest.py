"""Browser tests: Playwright's Python package driving Debian's chromium against
pytest-django's live_server. The live server and the test share the database.

By default the test settings run queued work in-process, so a run started from a page
finishes inside that request. Tests that must see work in progress (a batch's bar
moving, a run going from pending to completed) take `ui_worker` instead: queued work
goes to the broker and a real `qcluster` process runs it, as in production.

Without chromium (or the playwright package) these tests skip, saying why; with
CI=true they fail instead, so CI cannot pass without running them.
"""

import os
import shutil

import pytest
from django.conf import settings
from django.test import Client
from django_q.brokers import get_broker
from django_q.conf import Conf

import tests.ui.worker_functions  # noqa: F401  (the functions the tests' processes call)
from tests.ui.support import STAFF_EMAIL
from tests.worker import Worker

# Playwright's sync API keeps an event loop in this thread; Django would otherwise take
# every ORM call the test makes for one from async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--headless",
]


# --- Browser -------------------------------------------------------------------------------


def _unavailable() -> str | None:
    if shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires the browser tests to run")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait for a state, never sleep: generous enough for a loaded 2-core CI.
    expect.set_options(timeout=20_000)

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("staff", STAFF_EMAIL, "staff-pass-123")


@pytest.fixture
def page(browser, live_server, staff):
    """A logged-in page; any uncaught JavaScript error fails the test."""
    client = Client()
    client.force_login(staff)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "url": live_server.url,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            }
        ]
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


# --- A real worker -------------------------------------------------------------------------

WORKER_FUNCTIONS = "tests.ui.worker_functions"


@pytest.fixture
def queued(settings, monkeypatch):
    """Queued work goes onto the broker instead of running inside the request."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)


def _purge_queue() -> None:
    """Doorbells left by an earlier test (Redis outlives the database flush) must not
    keep the next test's worker busy."""
    get_broker().purge_queue()


@pytest.fixture
def ui_worker(queued, tmp_path):
    """`ui_worker(**env)` starts a real qcluster on the test database; every one started
    is stopped after the test (its log is printed, shown when the test fails)."""
    started: list[tuple[Worker, object]] = []

    def start(**env: str) -> Worker:
        _purge_queue()
        log = tmp_path / f"worker-{len(started) + 1}.log"
        worker = Worker(log, ENTITYFLOW_FUNCTION_MODULES=WORKER_FUNCTIONS, **env)
        started.append((worker, log))
        return worker

    yield start
    for worker, log in started:
        worker.kill()  # nothing to finish gracefully: the database is flushed next
        worker.log.close()
        print(f"--- {log.name} (last lines)")
        print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    _purge_queue()
