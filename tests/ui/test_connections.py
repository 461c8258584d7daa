"""The connections list and its "Test connection" action, against a local fake HubSpot."""

import pytest
from playwright.sync_api import expect

from automation.connections.services import connection_create
from automation.models import Connection
from tests.ui.support import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WRONG_TOKEN = "pat-na1-00000000-0000-0000-0000-000000000000"


@pytest.fixture
def connections(hubspot_fake):
    """A working HubSpot connection, one whose token was revoked, one never tested."""
    return {
        "crm": connection_create(
            provider="hubspot",
            name="crm",
            base_url=hubspot_fake.url,
            credentials={"accessToken": hubspot_fake.token},
        ),
        "old": connection_create(
            provider="hubspot",
            name="old-crm",
            base_url=hubspot_fake.url,
            credentials={"accessToken": WRONG_TOKEN},
        ),
        "files": connection_create(
            provider="dropbox", name="order-files", credentials={"accessToken": "sl.unused"}
        ),
    }


def row(page, name: str):
    return page.locator(
        "#result_list tbody tr", has=page.get_by_role("link", name=name, exact=True)
    )


def test_test_connection_from_the_connections_list(page, connections, hubspot_fake):
    page.goto("/admin/automation/connection/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    for name in ("crm", "old-crm", "order-files"):
        expect(row(page, name)).to_contain_text("never tested")
    shot(page, "30-connections")

    for name in ("crm", "old-crm"):
        row(page, name).locator("input[name=_selected_action]").check()
    page.locator("select[name=action]").select_option("test_connection")
    with page.expect_navigation():
        page.get_by_role("button", name="Go").click()

    messages = page.locator(".messagelist")
    expect(messages.locator(".success")).to_contain_text("crm: Works", ignore_case=True)
    expect(messages.locator(".error")).to_contain_text("old-crm:", ignore_case=True)
    expect(row(page, "crm")).to_contain_text("ok")
    expect(row(page, "old-crm")).to_contain_text("failed")
    expect(row(page, "order-files")).to_contain_text("never tested")
    shot(page, "31-connections-tested")

    assert hubspot_fake.count("/account-info/v3/details", "GET") == 2  # one call each
    content = page.content()
    assert hubspot_fake.token not in content and WRONG_TOKEN not in content
    crm = Connection.objects.get(pk=connections["crm"].pk)
    old = Connection.objects.get(pk=connections["old"].pk)
    assert crm.last_test_ok is True and old.last_test_ok is False
