"""100,000 matching entities. Starting the batch only counts and records it: the start
request makes the same few queries for 1,000 entities as for 100,000, and the fan-out is
left to the worker. Then a real worker fans out while the batch page keeps answering and
shows the runs being created. Speed is measured in bench/; this test prints the start's
and the reloads' response times and asserts none."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from playwright.sync_api import expect

from automation.models import Batch
from automation.services.batches import batch_cancel
from automation.services.processes import process_save
from entities.demo import order_reference
from entities.models import Entity
from tests.ui.support import Timer, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOTAL = 100_000
START_QUERIES_MAX = 15  # session, user, type, process, count, batch insert, enqueue, ...
GROWTH_OBSERVATIONS = 3


@pytest.fixture
def many_orders(order_type):
    """Test data written straight to the table (no services, no events): seconds, not minutes."""
    with Timer() as took:
        Entity.objects.bulk_create(
            (
                Entity(
                    entity_type=order_type,
                    reference=order_reference(n),
                    status="approved",
                    data={"customer": {"name": "Bulk"}, "total": n % 500 + 1},
                )
                for n in range(1, TOTAL + 1)
            ),
            batch_size=5000,
        )
    print(f"\nbulk-created {TOTAL:,} orders in {took.seconds:.1f} s")


@pytest.fixture
def touch(order_type):
    return process_save(
        slug="touch",
        name="Touch every order",
        entity_type=order_type,
        definition={"steps": [{"id": "touch", "type": "function", "function": "ui.ship"}]},
    )


def start_queries(staff, order_type, search: str) -> tuple[int, int]:
    """(queries, total) of one start request, made in this thread so they can be counted."""
    client = Client()
    client.force_login(staff)
    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            reverse("admin:automation_panel_start"),
            {"entity_type": order_type.pk, "process": "touch", "search": search},
        )
    assert response.status_code == 201, response.content
    batch_cancel(batch=Batch.objects.get(pk=response.json()["id"]))  # only counted, never run
    return len(captured), response.json()["total"]


def created_runs(page) -> int:
    return int(page.locator("#ef-created").get_attribute("data-created"))


def test_batch_over_100k_starts_at_once_and_the_page_answers_while_it_fans_out(
    page, many_orders, touch, staff, order_type, ui_worker
):
    # The start request does no per-entity work: as many queries for 100,000 as for 1,000.
    few, few_total = start_queries(staff, order_type, "ORD-01")  # ORD-01000 … ORD-01999
    many, many_total = start_queries(staff, order_type, "")
    print(f"\nstart request: {few} queries for {few_total:,} entities, {many} for {many_total:,}")
    assert (few_total, many_total) == (1_000, TOTAL)
    assert few == many <= START_QUERIES_MAX
    Batch.objects.all().delete()  # both were cancelled before any worker saw them

    ui_worker()
    page.goto("/admin/automation/batch/")
    page.select_option("#ef-type", label="Order")
    expect(page.locator("#ef-count-n")).to_have_text(f"{TOTAL:,}")
    page.select_option("#ef-process", "touch")

    with Timer() as took:
        page.get_by_role("button", name="Start batch").click()
        page.wait_for_url("**/admin/automation/batch/*/change/**")
    answered_ms = page.evaluate("Number(new URLSearchParams(location.search).get('started'))")
    print(
        f"start request answered in {answered_ms} ms (browser-measured); "
        f"click to batch page: {took.seconds * 1000:.0f} ms"
    )
    expect(page.locator("#ef-total")).to_have_text(f"{TOTAL:,}")
    expect(page.locator("#ef-progress")).to_be_visible()
    batch = Batch.objects.get()
    assert batch.total == TOTAL

    # While the worker creates the runs, 500 at a time: reload the page, let its polling
    # see more runs created, reload again, and so on. Each reload answers and shows more.
    expect(page.locator("#ef-batch-status")).to_have_text("fanning out", timeout=60_000)
    seen = [created_runs(page)]
    for _ in range(GROWTH_OBSERVATIONS):
        if seen[-1] == TOTAL:
            break  # fanned out already: on PostgreSQL chunks overlap, 100,000 runs in seconds
        page.wait_for_function(
            f"() => Number(document.getElementById('ef-created').dataset.created) > {seen[-1]}",
            timeout=60_000,
        )
        with Timer() as reload:
            page.reload()
            expect(page.locator("#ef-total")).to_have_text(f"{TOTAL:,}")
        with Timer() as poll:
            progress = page.request.get(f"/admin/automation/batch/{batch.pk}/progress/").json()
        seen.append(created_runs(page))
        print(
            f"reload {reload.seconds * 1000:.0f} ms, progress {poll.seconds * 1000:.0f} ms: "
            f"{seen[-1]:,} runs created, {progress['done']:,} done"
        )
        assert seen[-1] > seen[-2] and progress["created"] >= seen[-1]
    assert len(seen) > 1, "no reload while the batch fanned out"
    if seen[-1] < TOTAL:  # still fanning out: the count of runs created is shown
        expect(page.locator("#ef-created")).to_be_visible()
    shot(page, "16-batch-100k-fanning-out")
    assert 0 < seen[-1] <= TOTAL  # the worker is stopped here: no need to run 100,000
