"""Browser tests: Playwright's Python package driving Debian's chromium against
pytest-django's live_server. The live server and the test share the database, and the
test settings run queued steps in-process, so a run started from the page finishes
inside that request.

Without chromium (or the playwright package) these tests skip, saying why; with
CI=true they fail instead, so CI cannot pass without running them.
"""

import os
import shutil

import pytest
from django.conf import settings
from django.test import Client

from automation.exceptions import StepFailedError
from automation.functions import function
from tests.ui.support import STAFF_EMAIL

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


# --- Functions the browser tests' processes call -----------------------------------------


@function("ui.ship")
def ship(ctx):
    ctx.log("label printed", carrier="postnord")
    return {"shipped": ctx.entity.reference if ctx.entity else None}


@function("ui.convert-currency")
def convert_currency(ctx):
    """Fails for an order without an exchange rate in its data (the tests "fix" that)."""
    data = ctx.entity.data if ctx.entity else {}
    ctx.log("looking up exchange rate", currency=data.get("currency"))
    if not data.get("fxRate"):
        raise StepFailedError(
            f"No exchange rate for {data.get('currency')}", code="no_fx_rate", retryable=False
        )
    return {"totalEur": round(data["total"] * data["fxRate"], 2)}


@function("ui.reserve-stock")
def reserve_stock(ctx):
    ctx.log("calling the warehouse", sku="SKU-1138")
    ctx.log("warehouse answered 503")
    raise RuntimeError("warehouse said no: out of stock for SKU-1138")


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
    from playwright.sync_api import sync_playwright

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
