"""100,000 matching entities: starting the batch only counts and records it; the fan-out
is queued for the worker (here: the ORM broker, with no worker running). Speed is
measured in bench/; this test prints the start's response time and asserts none."""

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ
from playwright.sync_api import expect

from automation.models import Batch
from automation.services.processes import process_save
from entities.demo import order_reference
from entities.models import Entity
from tests.ui.support import Timer, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOTAL = 100_000


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
def queued_fanout(settings, monkeypatch):
    """The fan-out goes onto the queue (ORM broker) instead of running in the request."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)


def test_starting_a_batch_over_100k_entities_answers_at_once(
    page, many_orders, queued_fanout, order_type
):
    process_save(
        slug="touch",
        name="Touch every order",
        entity_type=order_type,
        definition={"steps": [{"id": "touch", "type": "function", "function": "ui.ship"}]},
    )
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
    expect(page.locator('[data-k="queued"]')).to_have_text(f"{TOTAL:,}")
    expect(page.locator("#ef-batch-status")).to_have_text("pending")
    shot(page, "16-batch-100k-queued")

    batch = Batch.objects.get()
    assert batch.total == TOTAL and batch.runs.count() == 0  # nothing fanned out in the request
    assert OrmQ.objects.count() == 1  # the fan-out task waits for a worker
    page.reload()  # the page keeps answering while the batch waits
    expect(page.locator("#ef-total")).to_have_text(f"{TOTAL:,}")
