"""Run history: narrow the list by process, status, entity and date in the browser."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.demo import demo_order_data
from entities.services import entity_create
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def history(order_type):
    """Four runs: two processes (one ships, one fails) over two orders; the oldest run,
    a failure of ORD-00043, is from 40 days ago."""
    ship = process_save(
        slug="ship-order",
        name="Ship order",
        entity_type=order_type,
        definition={"steps": [{"id": "ship", "type": "function", "function": "ui.ship"}]},
    )
    reserve = process_save(
        slug="reserve-stock",
        name="Reserve stock",
        entity_type=order_type,
        definition={
            "steps": [{"id": "reserve", "type": "function", "function": "ui.reserve-stock"}]
        },
    )
    orders = [
        entity_create(entity_type=order_type, reference=f"ORD-{n:05d}", data=demo_order_data(n))
        for n in (42, 43)
    ]
    runs = {}
    for process in (ship, reserve):
        for order in orders:
            run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order)
            runs[process.slug, order.reference] = run
    old = runs["reserve-stock", "ORD-00043"]
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    assert Run.objects.filter(status="failed").count() == 2
    return {"orders": orders, "runs": runs}


def rows(page):
    return page.locator("#result_list tbody tr")


def shown(page) -> set[tuple[str, str, str]]:
    """(process, entity, status) of every row in the list."""
    expect(page.locator("#result_list")).to_be_visible()
    return {
        tuple(
            row.locator(f"td.field-{name}").text_content().strip()
            for name in ("process", "entity_link", "status_col")
        )
        for row in rows(page).all()
    }


def pick(page, filter_title: str, choice: str) -> None:
    link = page.locator(f"#changelist-filter details[data-filter-title='{filter_title}']")
    with page.expect_navigation():
        link.get_by_role("link", name=choice, exact=True).click()


def test_filter_run_history_by_process_status_entity_and_date(page, history):
    page.goto("/admin/automation/run/")
    expect(rows(page)).to_have_count(4)
    shot(page, "20-run-history")

    pick(page, "process", "Reserve stock")
    assert shown(page) == {
        ("Reserve stock", "ORD-00042", "failed"),
        ("Reserve stock", "ORD-00043", "failed"),
    }
    pick(page, "created at", "Past 7 days")  # the 40-day-old failure drops out
    expect(rows(page)).to_have_count(1)
    assert shown(page) == {("Reserve stock", "ORD-00042", "failed")}
    shot(page, "21-run-history-process-and-date")
    pick(page, "created at", "Any date")
    expect(rows(page)).to_have_count(2)

    # A range of days: only the old failure was created 30 to 50 days ago.
    today = timezone.localdate()
    between = page.locator("#ef-created-between")
    between.get_by_label("From").fill(str(today - timedelta(days=50)))
    between.get_by_label("To").fill(str(today - timedelta(days=30)))
    with page.expect_navigation():
        between.get_by_role("button", name="Apply").click()
    assert shown(page) == {("Reserve stock", "ORD-00043", "failed")}  # process filter kept
    shot(page, "21-run-history-created-between")
    with page.expect_navigation():
        between.get_by_role("link", name="Any date").click()
    expect(rows(page)).to_have_count(2)

    with page.expect_navigation():
        page.get_by_role("link", name="Clear all filters").click()
    pick(page, "status", "Completed")
    assert shown(page) == {
        ("Ship order", "ORD-00042", "completed"),
        ("Ship order", "ORD-00043", "completed"),
    }
    pick(page, "status", "All")

    page.locator("#searchbar").fill("ORD-00043")  # an entity by its reference
    with page.expect_navigation():
        page.locator("#changelist-search").get_by_role("button", name="Search").click()
    assert shown(page) == {
        ("Ship order", "ORD-00043", "completed"),
        ("Reserve stock", "ORD-00043", "failed"),
    }

    # From the entity's page: all of its runs, the entity named in the filters.
    order = history["orders"][0]
    page.goto(f"/admin/entities/entity/{order.pk}/change/")
    with page.expect_navigation():
        page.locator("#ef-all-runs").click()
    expect(page.locator("#changelist-filter details[data-filter-title='entity']")).to_contain_text(
        "ORD-00042"
    )
    assert shown(page) == {
        ("Ship order", "ORD-00042", "completed"),
        ("Reserve stock", "ORD-00042", "failed"),
    }
    pick(page, "status", "Failed")
    assert shown(page) == {("Reserve stock", "ORD-00042", "failed")}
    shot(page, "22-run-history-entity-and-status")


def test_created_between_takes_one_open_end_and_ignores_what_is_not_a_day(client, staff, history):
    client.force_login(staff)
    url = "/admin/automation/run/"
    until = str(timezone.localdate() - timedelta(days=30))
    assert len(client.get(url, {"created_to": until}).context["cl"].result_list) == 1
    response = client.get(url, {"created_from": "2026-02-30"})
    assert response.status_code == 200 and "Not a date: ignored." in response.content.decode()
    assert len(response.context["cl"].result_list) == 4
