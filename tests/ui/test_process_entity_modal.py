"""A staff user processes one demo order from its page, without leaving it: the dry
run, then the run itself, which a real worker executes while the modal follows it."""

import pytest
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from entities.demo import demo_order_data
from entities.services import entity_create
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def order(order_type):
    return entity_create(entity_type=order_type, reference="ORD-00042", data=demo_order_data(42))


@pytest.fixture
def processes(order_type):
    process_save(
        slug="notify-customer",
        name="Notify customer",
        entity_type=order_type,
        definition={"steps": [{"id": "notify", "type": "function", "function": "ui.ship"}]},
    )
    return process_save(
        slug="ship-order",
        name="Ship order",
        entity_type=order_type,
        description="Checks the total and the size, then books the carrier.",
        definition={
            "steps": [
                {
                    "id": "check-total",
                    "type": "condition",
                    "condition": "entity.data.total > 0",
                    "next": "big-order",
                    "config": {"else": "hold"},
                },
                {
                    "id": "big-order",
                    "type": "condition",
                    "condition": "entity.data.items > 100",
                    "next": "hold",
                    "config": {"else": "book-carrier"},
                },
                {
                    "id": "book-carrier",
                    "type": "function",
                    "function": "ui.ship",
                    "config": {"params": {"seconds": 3}},  # long enough to be seen running
                },
                {"id": "hold", "type": "function", "function": "ui.ship"},
            ]
        },
    )


def test_process_an_order_from_its_page(page, order, processes, ui_worker):
    ui_worker()
    page.goto(f"/admin/entities/entity/{order.pk}/change/")
    page.evaluate("window.__samePage = true")
    page.get_by_role("button", name="Process entity").click()

    dialog = page.locator("#ef-process-modal")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Ship order").check()
    dry = dialog.locator("#ef-dry-result[data-process='ship-order']")
    expect(dry).to_be_visible()
    step = lambda sid: dry.locator("li", has=page.locator(f"text='{sid}'"))  # noqa: E731
    # Each condition with its value, the steps that would run, the one that would not.
    expect(step("check-total")).to_contain_text("entity.data.total > 0")
    expect(step("check-total").locator(".ef-val")).to_have_text("→ true")
    expect(step("big-order")).to_contain_text("entity.data.items > 100")
    expect(step("big-order").locator(".ef-val")).to_have_text("→ false")
    expect(step("book-carrier")).to_have_class("ef-run-yes")
    expect(step("hold")).to_have_class("ef-run-no ef-skip")
    expect(dry).to_contain_text("Requirements")
    shot(page, "01-entity-modal-dry-run", full_page=False)

    dialog.get_by_role("button", name="Run").click()
    # The worker has the run: the modal shows it unfinished, on its slow step, and then
    # finished, by polling (no reload).
    running = dialog.locator("#ef-run-state[data-status='running']")
    expect(running).to_be_visible()
    expect(running).to_contain_text("book-carrier", timeout=60_000)
    shot(page, "02-entity-modal-running", full_page=False)
    state = dialog.locator("#ef-run-state[data-status='completed']")
    expect(state).to_be_visible(timeout=60_000)
    expect(state).to_contain_text("completed")
    assert page.evaluate("window.__samePage") is True  # no reload happened
    shot(page, "02-entity-modal-completed", full_page=False)

    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED and run.trigger == {
        "type": "manual",
        "source": "admin",
    }
    link = dialog.get_by_role("link", name="Open the run")
    assert link.get_attribute("href") == f"/admin/automation/run/{run.pk}/change/"
    link.click()
    expect(page.locator("#ef-run-status")).to_have_text("completed")
    expect(page.locator(".ef-timeline")).to_contain_text("book-carrier")
    shot(page, "03-run-page-completed")
