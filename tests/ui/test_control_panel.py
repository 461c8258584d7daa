"""The control panel: filter 1,000 orders, start a batch, watch a real worker move the
bar to 100%, retry the failures."""

import pytest
from django.db import transaction
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from entities.demo import demo_order_data, order_reference
from entities.models import Entity
from entities.services import entity_update
from tests.ui.support import LIVE_PROGRESS, Timer, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORDERS = 1000


@pytest.fixture
def orders(order_type):
    """1,000 demo orders, written in bulk (test data; the services are not what is tested
    here). Every tenth has no customer email, so it is `received`; the others `approved`."""
    with Timer() as took:
        rows = []
        for number in range(1, ORDERS + 1):
            data = demo_order_data(number)
            status = "approved" if data["customer"].get("email") else "received"
            rows.append(
                Entity(
                    entity_type=order_type,
                    reference=order_reference(number),
                    data=data,
                    status=status,
                )
            )
        Entity.objects.bulk_create(rows, batch_size=500)
    print(f"\ncreated {ORDERS} orders in {took.seconds:.1f} s")
    return Entity.objects.filter(entity_type=order_type)


@pytest.fixture
def fulfil(order_type):
    """Orders in SEK need an exchange rate in their data; without one that step fails."""
    return process_save(
        slug="fulfil-orders",
        name="Price and notify",
        entity_type=order_type,
        definition={
            "steps": [
                {
                    "id": "is-sek",
                    "type": "condition",
                    "condition": 'entity.data.currency == "SEK"',
                    "next": "convert-currency",
                    "config": {"else": "ship"},
                },
                {
                    "id": "convert-currency",
                    "type": "function",
                    "function": "ui.convert-currency",
                    "next": "ship",
                    "config": {"params": {"seconds": 0.1}},
                },
                {
                    "id": "ship",
                    "type": "function",
                    "function": "ui.ship",
                    "config": {"params": {"seconds": 0.2}},  # slow enough to watch
                },
            ]
        },
    )


def test_batch_over_filtered_orders_with_failures_and_retry(
    page, orders, fulfil, order_type, ui_worker
):
    chosen = orders.filter(status="received")  # the 100 orders still missing an email
    sek = [e for e in chosen if e.data["currency"] == "SEK"]
    expected_ok = chosen.count() - len(sek)
    assert chosen.count() == ORDERS // 10 and sek
    ui_worker()
    page.goto("/admin/automation/batch/")
    page.select_option("#ef-type", label="Order")
    expect(page.locator("#ef-count-n")).to_have_text(f"{ORDERS:,}")
    page.select_option("#ef-status", "received")
    expect(page.locator("#ef-count-n")).to_have_text(f"{chosen.count():,}")
    expect(page.locator("#ef-count-label")).to_have_text("orders match")
    page.select_option("#ef-process", "fulfil-orders")
    shot(page, "04-control-panel-count")

    with Timer() as took:
        page.get_by_role("button", name="Start batch").click()
        page.wait_for_url("**/admin/automation/batch/*/change/**")
    print(f"start to batch page: {took.seconds * 1000:.0f} ms (the worker does the runs)")

    # The worker runs the batch while the page polls: the bar is caught part-way, with
    # work still queued or running and a rate and an ETA shown.
    live = page.wait_for_function(LIVE_PROGRESS, timeout=120_000).json_value()
    print(f"caught in progress: {live}")
    assert 0 < live["percent"] < 100 and 0 < live["bar"] < 100
    assert live["done"] == 0 or 0 < live["filled"] < 100  # the green part of the bar grows
    assert live["queued"] + live["running"] > 0
    assert live["rate"] not in ("", "—") and live["eta"] not in ("", "—", "done")
    shot(page, "05-batch-in-progress")

    expect(page.locator("#ef-percent")).to_have_text("100%", timeout=120_000)
    expect(page.locator('[data-k="done"]')).to_have_text(f"{expected_ok:,}")
    expect(page.locator('[data-k="failed"]')).to_have_text(f"{len(sek):,}")
    expect(page.locator("#ef-batch-status")).to_have_text("completed")
    expect(page.locator('[data-k="eta"]')).to_have_text("done")
    shot(page, "05-batch-finished-with-failures")

    page.locator("#ef-outcomes").get_by_role("link", name="Failed").click()
    expect(page.locator("#ef-outcomes-table tbody tr").first).to_have_attribute(
        "data-status", "failed"
    )
    expect(page.locator("#ef-outcomes-table")).to_contain_text("No exchange rate for SEK")
    shot(page, "06-batch-failed-outcomes")

    page.goto("/admin/automation/apiprocess/")
    rate = round(100 * expected_ok / chosen.count())
    expect(page.locator("#result_list")).to_contain_text(f"{rate}%")
    shot(page, "13-process-list")
    page.go_back()

    with transaction.atomic():  # the fix: the failing orders get their exchange rate
        for entity in sek:
            entity_update(entity=entity, data={"fxRate": 0.087}, merge=True)
    page.get_by_role("button", name=f"↻ Retry failed ({len(sek)})").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Retrying {len(sek)} failed run(s)")
    # The worker re-runs them from their failed step; the page follows without a reload.
    expect(page.locator('[data-k="failed"]')).to_have_text("0", timeout=120_000)
    expect(page.locator('[data-k="done"]')).to_have_text(f"{chosen.count():,}", timeout=120_000)
    expect(page.locator("#ef-batch-status")).to_have_text("completed")
    expect(page.locator("#ef-percent")).to_have_text("100%")
    shot(page, "07-batch-after-retry")

    # Each failed run was retried as a new attempt linked to it: one latest attempt per
    # order, and in the new attempts the steps before the failed one were kept, not run.
    batch_runs = Run.objects.filter(batch__isnull=False, reruns__isnull=True)
    assert batch_runs.count() == chosen.count()
    retried = Run.objects.filter(batch__isnull=False, rerun_of__isnull=False)
    assert retried.count() == len(sek)
    first_ran = {next(s.step_id for s in run.steps.order_by("id")
                      if not any("kept from run" in line["message"] for line in s.logs))
                 for run in retried}
    assert first_ran == {"convert-currency"}  # only from the failed step on
