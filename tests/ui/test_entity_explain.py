"""A staff user asks "what if the total were 12,000?" on an order's page: the Explain
panel's list of processes changes as the what-if patch is typed, and nothing is written."""

import pytest
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from entities.demo import demo_order_data
from entities.models import EntityEvent
from entities.services import entity_create
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def order(order_type):
    return entity_create(entity_type=order_type, reference="ORD-00042", data=demo_order_data(42))


@pytest.fixture
def processes(order_type):
    noop = [{"id": "review", "type": "function", "function": "noop"}]
    process_save(slug="big-order-review", name="Big order review", entity_type=order_type,
                 definition={"steps": noop, "triggers": [
                     {"type": "event", "config": {"eventType": "entity.updated"},
                      "condition": "entity.data.total > 10000",
                      "debounce": {"windowMs": 2000}}]})
    process_save(slug="ship-order", name="Ship order", entity_type=order_type,
                 definition={"steps": noop, "triggers": [
                     {"type": "status", "config": {"entityType": "order", "status": "shipped"}}]})


def test_editing_the_what_if_patch_changes_the_list(page, order, processes):
    events = EntityEvent.objects.count()
    page.goto(f"/admin/entities/entity/{order.pk}/change/")
    panel = page.locator("#ef-explain")
    big = panel.locator("li[data-process='big-order-review']")
    ship = panel.locator("li[data-process='ship-order']")
    # Without a change: the condition is false, with the total it saw.
    expect(big).to_have_attribute("data-would-start", "false")
    expect(big.locator(".ef-reason")).to_contain_text("The condition is false")
    expect(big.locator(".ef-reason")).to_contain_text(f"entity.data.total = {order.data['total']}")
    expect(ship.locator(".ef-reason")).to_contain_text("does not reach")
    shot(page, "explain-01-before", full_page=False)

    patch = panel.get_by_label("What if the data changed like this")
    patch.fill('{"total": 12000}')

    expect(big).to_have_attribute("data-would-start", "true")
    expect(big).to_contain_text("would start")
    expect(big).to_contain_text('"total":12000')
    expect(big.locator(".ef-flow[data-code='debounced']")).to_contain_text(
        "Debounced (trailing, 2000 ms): no run starts now")
    expect(ship).to_have_attribute("data-would-start", "false")
    expect(panel.locator("#ef-explain-state")).to_contain_text("1 of 2 processes would start")
    shot(page, "explain-02-total-12000", full_page=False)

    patch.fill('{"total": 50}')
    expect(big).to_have_attribute("data-would-start", "false")
    expect(big.locator(".ef-reason")).to_contain_text("entity.data.total = 50")

    assert EntityEvent.objects.count() == events and Run.objects.count() == 0
