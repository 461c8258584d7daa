"""The process editor: list, graph, and a validation error beside the step it names."""

import json

import pytest
from playwright.sync_api import expect

from automation.models import ApiProcess
from automation.services.processes import process_save
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEFINITION = {
    "steps": [
        {
            "id": "calculate",
            "name": "Calculate",
            "type": "function",
            "function": "transform",
            "config": {"params": {"output": {"total": "input.quantity * input.price"}}},
            "next": "check",
        },
        {
            "id": "check",
            "type": "condition",
            "condition": "result.total > 10000",
            "next": "require-approval",
            "config": {"else": "auto-approve"},
        },
        {
            "id": "require-approval",
            "type": "human",
            "next": "finalize",
            "config": {"approvers": ["manager@example.com"], "timeout": 86400000},
        },
        {"id": "auto-approve", "type": "function", "function": "ui.ship", "next": "notify"},
        {"id": "notify", "type": "parallel", "next": ["email", "webhook"]},
        {
            "id": "email",
            "type": "function",
            "function": "ui.ship",
            "next": "finalize",
            "config": {"onError": "finalize"},
        },
        {"id": "webhook", "type": "function", "function": "ui.ship", "next": "finalize"},
        {"id": "finalize", "type": "function", "function": "ui.ship"},
    ],
    "triggers": [
        {
            "type": "event",
            "config": {"eventType": "purchase.created"},
            "condition": "event.data.total > 0",
        }
    ],
}


@pytest.fixture
def process(order_type):
    return process_save(
        slug="approve-purchase",
        name="Approve Purchase",
        definition=DEFINITION,
        entity_type=order_type,
    )


def test_invalid_definition_shows_the_error_next_to_its_step(page, process):
    page.goto("/admin/automation/apiprocess/")
    expect(page.locator("#result_list")).to_contain_text("event purchase.created (if …)")
    page.get_by_role("link", name="Approve Purchase").click()
    expect(page.locator(".ef-graph-svg")).to_be_visible()
    expect(page.locator("#ef-check")).to_have_text("✓ valid")
    expect(page.locator(".ef-graph-svg")).to_contain_text("join · waits for")
    shot(page, "14-process-editor")
    page.emulate_media(color_scheme="dark")
    shot(page, "18-process-editor-dark")
    page.emulate_media(color_scheme="light")

    broken = json.loads(json.dumps(DEFINITION))
    broken["steps"][1]["config"]["else"] = "auto-aprove"  # a typo
    page.locator("textarea[data-ef-editor]").fill(json.dumps(broken, indent=2))
    step = page.locator("#ef-step-1")
    expect(step).to_have_class("ef-t-condition ef-has-error")  # live, before saving
    expect(page.locator("#ef-check")).to_contain_text("problem")

    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("#ef-definition-errors")).to_contain_text("Nothing was saved")
    errors = page.locator("#ef-step-1 .ef-step-errors")
    expect(errors).to_contain_text("config.else: unknown step 'auto-aprove'")
    expect(page.locator("#ef-step-0 .ef-step-errors")).to_have_count(0)
    expect(page.locator(".ef-node-unknown")).to_contain_text("auto-aprove")
    errors.scroll_into_view_if_needed()
    shot(page, "15-process-editor-error")
    assert ApiProcess.objects.get(pk=process.pk).current_version.number == 1
