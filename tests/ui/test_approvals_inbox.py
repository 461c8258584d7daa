"""Approving a waiting step from the inbox lets its run finish."""

import pytest
from playwright.sync_api import expect

from automation.models import Function, Run
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


@pytest.fixture
def waiting_form_run(order_type, staff):
    Function.objects.create(name="apply-correction", action="transform", config={"output": {
        "correctedTotal": "result.data.amount", "reason": "result.data.reason"}})
    process = process_save(
        slug="correct-order", name="Correct order", entity_type=order_type,
        definition={"steps": [
            {"id": "review", "type": "human", "next": "apply",
             "config": {"approvers": [STAFF_EMAIL], "form": {
                 "type": "object", "required": ["amount", "reason"], "properties": {
                     "amount": {"type": "number", "title": "Corrected amount", "minimum": 0},
                     "reason": {"type": "string", "title": "Reason code",
                                "enum": ["price", "quantity", "other"]}}}}},
            {"id": "apply", "type": "function", "function": "apply-correction"}]},
    )
    order = entity_create(entity_type=order_type, reference="ORD-00315", data=demo_order_data(315))
    run, _ = run_start(process=process, trigger={"type": "manual", "source": "admin"},
                       entity=order, input={"total": 125})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    return run


def test_fill_a_task_form_in_the_inbox(page, waiting_form_run):
    page.goto("/admin/automation/approvalrequest/")
    card = page.locator(".ef-approval").first
    expect(card).to_contain_text("Correct order")
    card.get_by_label("Corrected amount").fill("-3")
    card.get_by_label("Reason code").select_option("price")
    card.get_by_role("button", name="Approve").click()

    card = page.locator(".ef-approval").first
    expect(page.locator(".messagelist")).to_contain_text("Check the highlighted fields")
    expect(card.locator(".ef-field-error")).to_have_text(["Must be at least 0."])
    expect(card.get_by_label("Corrected amount")).to_have_value("-3")
    expect(card.get_by_label("Reason code")).to_have_value("price")
    shot(page, "13-approval-form-error")
    waiting_form_run.refresh_from_db()
    assert waiting_form_run.status == Run.Status.WAITING

    card.get_by_label("Corrected amount").fill("118.40")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".messagelist")).to_contain_text("the run is now completed")
    waiting_form_run.refresh_from_db()
    assert waiting_form_run.status == Run.Status.COMPLETED
    assert waiting_form_run.result == {"correctedTotal": 118.4, "reason": "price"}
    page.goto(f"/admin/automation/run/{waiting_form_run.pk}/change/")
    expect(page.locator("body")).to_contain_text("118.4")


def test_one_click_link_from_the_email(page, order_type):
    """No login: the link page decides once; opening it again says so."""
    import re

    from django.core import mail

    process = process_save(slug="link-approve", name="Link approval", entity_type=order_type,
                           definition={"steps": [
                               {"id": "ask", "type": "human",
                                "config": {"approvers": ["cfo@example.com"]}}]})
    order = entity_create(entity_type=order_type, reference="ORD-00316", data=demo_order_data(316))
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order, input={})
    approve = re.search(r"^Approve: \S+?(/approvals/link/\S+)$", mail.outbox[-1].body, re.M)[1]
    page.context.clear_cookies()  # not signed in
    page.goto(approve)
    expect(page.locator("h1")).to_contain_text("Link approval")
    page.get_by_label("Comment").fill("OK from the train")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#ef-link-done")).to_contain_text("You approved this request")
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    page.goto(approve)
    expect(page.locator("#ef-link-refused")).to_contain_text("This link was already used.")
    expect(page.locator("#ef-link-refused")).to_contain_text("Nothing was changed.")
