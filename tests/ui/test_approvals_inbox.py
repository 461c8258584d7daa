"""Approving a waiting step from the inbox lets its run finish."""

import pytest
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.demo import demo_order_data
from entities.services import entity_create
from tests.ui.support import STAFF_EMAIL, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waiting_run(order_type, staff):
    process = process_save(
        slug="approve-purchase",
        name="Approve purchase",
        entity_type=order_type,
        definition={
            "steps": [
                {
                    "id": "require-approval",
                    "type": "human",
                    "next": "finalize",
                    "config": {
                        "approvers": [STAFF_EMAIL, "cfo@example.com"],
                        "timeout": 86_400_000,
                    },
                },
                {"id": "finalize", "type": "function", "function": "ui.ship"},
            ]
        },
    )
    order = entity_create(entity_type=order_type, reference="ORD-00314", data=demo_order_data(314))
    run, _ = run_start(
        process=process,
        trigger={"type": "manual", "source": "admin"},
        entity=order,
        input={"total": 12500, "currency": "EUR"},
    )
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    return run


def test_approve_in_the_inbox(page, waiting_run):
    page.goto("/admin/")
    page.get_by_role("link", name="Approval requests").click()
    card = page.locator(".ef-approval").first
    expect(card).to_contain_text("Approve purchase")
    expect(card).to_contain_text("ORD-00314")
    expect(card).to_contain_text('"total": 12500')
    card.get_by_label("Comment").fill("Within budget.")
    shot(page, "11-approvals-inbox")

    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".messagelist")).to_contain_text("the run is now completed")
    expect(page.locator("#ef-inbox-count")).to_have_text("0 waiting for you")
    shot(page, "12-approvals-inbox-after")
    waiting_run.refresh_from_db()
    assert waiting_run.status == Run.Status.COMPLETED
    assert waiting_run.approvals.get().decisions[0]["comment"] == "Within budget."
