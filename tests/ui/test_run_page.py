"""A failed run: the error in the Errors tab, the log lines in the Logs tab."""

import pytest
from playwright.sync_api import expect

from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.demo import demo_order_data
from entities.services import entity_create
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def failed_run(order_type):
    process = process_save(
        slug="reserve",
        name="Reserve stock",
        entity_type=order_type,
        definition={
            "steps": [
                {
                    "id": "price",
                    "type": "function",
                    "function": "transform",
                    "config": {"params": {"output": {"total": "entity.data.total"}}},
                    "next": "reserve-stock",
                },
                {"id": "reserve-stock", "type": "function", "function": "ui.reserve-stock"},
            ]
        },
    )
    order = entity_create(entity_type=order_type, reference="ORD-00007", data=demo_order_data(8))
    run, _ = run_start(process=process, trigger={"type": "manual", "source": "admin"}, entity=order)
    run.refresh_from_db()
    assert run.status == "failed"
    return run


def test_failed_run_shows_error_and_logs(page, failed_run):
    page.goto("/admin/automation/run/?status__exact=failed")
    expect(page.locator("#result_list")).to_contain_text("Reserve stock")
    shot(page, "08-run-history")
    page.locator("#result_list tbody th a").first.click()

    expect(page.locator("#ef-run-status")).to_have_text("failed")
    expect(page.locator(".ef-banner")).to_contain_text("warehouse said no")
    pane = page.locator(".ef-step-pane:visible")
    expect(pane).to_contain_text("reserve-stock")

    pane.get_by_role("tab", name="Errors").click()
    errors = pane.locator(".ef-tab-pane[data-tab='errors']")
    expect(errors).to_be_visible()
    expect(errors.locator(".ef-error-message")).to_have_text(
        "RuntimeError: warehouse said no: out of stock for SKU-1138"
    )
    expect(errors).to_contain_text("function_error")
    expect(errors.locator(".ef-frames")).to_contain_text("reserve_stock")
    shot(page, "09-run-errors-tab")

    pane.get_by_role("tab", name="Logs").click()
    logs = pane.locator(".ef-tab-pane[data-tab='logs']")
    expect(logs).to_be_visible()
    expect(logs).to_contain_text("calling the warehouse")
    expect(logs).to_contain_text("warehouse answered 503")
    expect(logs).to_contain_text("SKU-1138")
    shot(page, "10-run-logs-tab")

    page.locator(".ef-timeline button", has_text="price").click()
    first = page.locator(".ef-step-pane:visible")
    first.get_by_role("tab", name="Response").click()
    expect(first.locator(".ef-tab-pane[data-tab='response']")).to_contain_text('"total"')
    expect(page.get_by_role("button", name="↻ Retry from failed step")).to_be_visible()

    page.emulate_media(color_scheme="dark")  # the admin's dark theme: our colours follow it
    page.locator(".ef-timeline button", has_text="reserve-stock").click()
    shot(page, "17-run-page-dark")
