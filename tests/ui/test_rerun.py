"""Re-run from a chosen step in the browser: pick a step on a failed run, edit its input,
see the preview, start, and watch the new attempt complete on a real worker."""

import pytest
from playwright.sync_api import expect

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.ui.support import shot
from tests.worker import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pick_a_step_edit_its_input_preview_start_and_watch_it_complete(page, ui_worker):
    process = process_save(slug="reserve", name="Reserve stock", definition={"steps": [
        {"id": "prepare", "type": "function", "function": "transform",
         "config": {"params": {"output": {"qty": "input.qty"}}}, "next": "reserve"},
        {"id": "reserve", "type": "function", "function": "ui.reserve-qty",
         "config": {"params": {"seconds": 1.5}}, "next": "confirm"},
        {"id": "confirm", "type": "function", "function": "noop"}]})
    ui_worker()
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"qty": 9})
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 60, message="the run to fail")

    page.goto(f"/admin/automation/run/{run.pk}/change/")
    expect(page.locator("#ef-run-status")).to_have_text("failed")
    page.locator(".ef-timeline button", has_text="reserve").click()
    page.locator(".ef-step-pane:visible").get_by_role("link", name="Re-run from here…").click()

    editor = page.locator("#ef-rerun-input")
    expect(editor).to_have_value('{\n  "qty": 9\n}')
    editor.fill('{"qty": 2}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#ef-plan-steps")).to_have_text("reserve, confirm")
    expect(page.locator("#ef-plan-kept")).to_have_text("prepare")
    expect(page.locator("#ef-rerun-plan")).to_contain_text("with edited input")
    expect(page.locator("#ef-rerun-input")).to_have_value('{"qty": 2}')
    shot(page, "20-rerun-preview")
    assert Run.objects.count() == 1  # a preview starts nothing

    page.get_by_role("button", name="Start re-run").click()
    expect(page.locator("#ef-attempts")).to_contain_text(f"run {str(run.pk)[:8]}")
    expect(page.locator("#ef-run-status")).to_have_text("completed", timeout=60_000)
    new = run.reruns.get()
    assert page.url.endswith(f"/admin/automation/run/{new.pk}/change/")
    assert new.steps.get(step_id="reserve").output == {"reserved": 2}
    shot(page, "21-rerun-completed")
