"""A sub-process in the run pages: from the parent run to its child through the process
step's pane, and back through the child's banner (docs/user-guide/sub-processes.md)."""

import pytest
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_parent_and_child_run_pages_link_both_ways(page):
    process_save(slug="credit-check", name="Credit check", definition={"steps": [
        {"id": "score", "type": "function", "function": "transform",
         "config": {"params": {"output": {"approved": "input.amount < 1000"}}}}]})
    parent = process_save(slug="order-flow", name="Order flow", definition={"steps": [
        {"id": "check", "type": "process",
         "config": {"process": "credit-check", "input": {"amount": "input.total"}}}]})
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"total": 200})
    child = Run.objects.get(parent_run=run)

    page.goto(f"/admin/automation/run/{run.pk}/change/")
    expect(page.locator("#ef-subprocesses")).to_contain_text("of credit-check (step “check”)")
    pane = page.locator(".ef-step-pane:visible")
    expect(pane).to_contain_text("check")
    pane.locator(".ef-subprocess-link a").click()

    expect(page.locator("#ef-subprocesses")).to_contain_text("this run is a sub-process of")
    assert f"/admin/automation/run/{child.pk}/" in page.url
    expect(page.locator("#ef-run-status")).to_have_text("completed")
    page.locator("#ef-subprocesses a").first.click()
    expect(page.locator("#ef-subprocesses")).to_contain_text("Started")
    assert f"/admin/automation/run/{run.pk}/" in page.url
