"""A staff user processes one demo order from its page, without leaving it."""

import importlib.util

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
        description="Checks the total, then books the carrier.",
        definition={
            "steps": [
                {
                    "id": "check-total",
                    "type": "condition",
                    "condition": "entity.data.total > 0",
                    "next": "book-carrier",
                    "config": {"else": "hold"},
                },
                {"id": "book-carrier", "type": "function", "function": "ui.ship"},
                {"id": "hold", "type": "function", "function": "ui.ship"},
            ]
        },
    )


def test_process_an_order_from_its_page(page, order, processes):
    page.goto(f"/admin/entities/entity/{order.pk}/change/")
    page.evaluate("window.__samePage = true")
    page.get_by_role("button", name="Process entity").click()

    dialog = page.locator("#ef-process-modal")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Ship order").check()
    dry = dialog.locator("#ef-dry-result[data-process='ship-order']")
    expect(dry).to_be_visible()
    if importlib.util.find_spec("automation.services.dry_run") is not None:
        expect(dry).to_contain_text("check-total")
        expect(dry).to_contain_text("book-carrier")
    expect(dry).to_contain_text("Requirements")
    shot(page, "01-entity-modal-dry-run", full_page=False)

    dialog.get_by_role("button", name="Run").click()
    state = dialog.locator("#ef-run-state[data-status='completed']")
    expect(state).to_be_visible()
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
