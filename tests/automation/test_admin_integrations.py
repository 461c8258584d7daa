"""Connections, functions, webhooks and API clients in the admin (server side)."""


import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.hashers import check_password
from django.db import connection as db_connection
from django.urls import reverse

from automation.connections.services import connection_credentials
from automation.models import (
    ApiClient,
    Connection,
    Function,
    WebhookDelivery,
    WebhookSubscription,
)
from tests.integrations.fakes.hubspot import FakeHubSpot

pytestmark = pytest.mark.django_db


def test_connection_list_hides_credentials(admin_client):
    connection = Connection.objects.create(
        provider="hubspot", name="crm", credentials_encrypted="SECRET-BLOB"
    )
    listing = admin_client.get(reverse("admin:automation_connection_changelist")).content.decode()
    assert "crm" in listing and "never tested" in listing
    detail = admin_client.get(reverse("admin:automation_connection_change", args=[connection.pk]))
    assert detail.status_code == 200 and "SECRET-BLOB" not in detail.content.decode()


def test_test_connection_action_records_the_outcome(admin_client):
    connection = Connection.objects.create(provider="hubspot", name="crm")  # no credentials
    changelist = reverse("admin:automation_connection_changelist")
    assert 'value="test_connection"' in admin_client.get(changelist).content.decode()
    response = admin_client.post(
        changelist, {"action": "test_connection", "_selected_action": [connection.pk]}, follow=True
    )
    connection.refresh_from_db()
    assert connection.last_test_ok is False and connection.last_tested_at is not None
    assert any(str(m).startswith("crm: ") for m in response.context["messages"])
    assert "ef-status-failed" in response.content.decode()


def test_function_form_checks_the_action_config(admin_client):
    url = reverse("admin:automation_function_add")
    bad = admin_client.post(url, {"name": "calc", "action": "transform", "config": '{"output": 5}'})
    assert bad.status_code == 200 and bad.context["adminform"].form.errors
    good = admin_client.post(
        url,
        {"name": "calc", "action": "transform", "config": '{"output": {"total": "input.a * 2"}}'},
    )
    assert good.status_code == 302 and Function.objects.filter(name="calc").exists()


def test_webhook_delivery_log_is_read_only(admin_client):
    subscription = WebhookSubscription.objects.create(
        url="https://example.com/hook", events=["workflow.completed"], secret_encrypted="x"
    )
    WebhookDelivery.objects.create(
        subscription=subscription,
        event="workflow.completed",
        payload={"id": "1"},
        status="failed",
        last_error="timeout",
    )
    html = admin_client.get(reverse("admin:automation_webhookdelivery_changelist")).content.decode()
    assert "workflow.completed" in html and "ef-status-failed" in html and "timeout" in html
    assert admin_client.get(reverse("admin:automation_webhookdelivery_add")).status_code == 403
    subs = admin_client.get(
        reverse("admin:automation_webhooksubscription_change", args=[subscription.pk])
    ).content.decode()
    assert "secret_encrypted" not in subs


def test_creating_an_api_client_shows_the_secret_once(admin_client):
    url = reverse("admin:automation_apiclient_add")
    assert "Create client" in admin_client.get(url).content.decode()
    html = admin_client.post(
        url, {"name": "Warehouse", "rate_limit_per_minute": 120}
    ).content.decode()
    client = ApiClient.objects.get(name="Warehouse")
    secret = html.split('id="ef-client-secret-value">')[1].split("<")[0]
    assert client.key in html and check_password(secret, client.secret_hash)
    assert client.rate_limit_per_minute == 120
    detail = admin_client.get(reverse("admin:automation_apiclient_change", args=[client.pk]))
    assert (
        secret not in detail.content.decode() and client.secret_hash not in detail.content.decode()
    )


def test_deactivate_action(admin_client):
    from automation.services.api_auth import api_client_create

    client, _ = api_client_create(name="Old")
    admin_client.post(
        reverse("admin:automation_apiclient_changelist"),
        {"action": "deactivate", "_selected_action": [client.pk]},
    )
    client.refresh_from_db()
    assert client.active is False


def test_the_automation_index_links_the_staff_pages(admin_client):
    html = admin_client.get(reverse("admin:app_list", args=["automation"])).content.decode()
    for name in ("batch_changelist", "approvalrequest_changelist", "run_changelist"):
        assert reverse(f"admin:automation_{name}") in html
    sidebar = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:automation_batch_changelist") in sidebar


# -- adding and changing connections ---------------------------------------------------

HUBSPOT_TOKEN = "pat-na1-admin-typed-secret-7f3a9c"
NEW_TOKEN = "pat-na1-admin-second-secret-41d2e8"


def add_connection(admin_client, **fields):
    data = {"provider": "hubspot", "name": "crm", "base_url": "", "options": "{}", **fields}
    return admin_client.post(reverse("admin:automation_connection_add"), data)


def change_connection(admin_client, connection, **fields):
    data = {"name": connection.name, "base_url": connection.base_url, "options": "{}", **fields}
    url = reverse("admin:automation_connection_change", args=[connection.pk])
    return admin_client.post(url, data)


def raw_row(connection) -> str:
    """Every column of the connection's row as the database holds it."""
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Connection._meta.db_table} WHERE id = %s",
                       [connection.pk])
        return " ".join(str(value) for value in cursor.fetchone())


def change_messages() -> str:
    return " ".join(LogEntry.objects.values_list("change_message", flat=True))


def test_add_page_offers_each_providers_credentials_as_password_inputs(admin_client):
    html = admin_client.get(reverse("admin:automation_connection_add")).content.decode()

    assert '<select name="provider"' in html and '<option value="hubspot">HubSpot' in html
    assert "HubSpot credentials" in html and "Dropbox credentials" in html
    assert 'type="password" name="hubspot__accessToken"' in html
    assert 'type="password" name="dropbox__refreshToken"' in html
    assert 'name="base_url"' in html


def test_admin_add_stores_the_token_encrypted(admin_client):
    response = add_connection(admin_client, base_url="https://hubspot.example.com",
                              hubspot__accessToken=HUBSPOT_TOKEN)

    assert response.status_code == 302, response.context["adminform"].form.errors
    connection = Connection.objects.get(name="crm")
    assert connection.provider == "hubspot" and connection.base_url == "https://hubspot.example.com"
    assert connection_credentials(connection) == {"accessToken": HUBSPOT_TOKEN}
    assert HUBSPOT_TOKEN not in raw_row(connection) and "accessToken" not in raw_row(connection)
    assert HUBSPOT_TOKEN not in change_messages()
    assert HUBSPOT_TOKEN not in admin_client.get(response.url).content.decode()  # the list
    change_url = reverse("admin:automation_connection_change", args=[connection.pk])
    html = admin_client.get(change_url).content.decode()
    assert HUBSPOT_TOKEN not in html and "•••• set" in html
    assert "never tested" in html  # the last test result, on the change page


def test_change_without_reentering_the_token_keeps_it(admin_client):
    add_connection(admin_client, hubspot__accessToken=HUBSPOT_TOKEN)
    connection = Connection.objects.get(name="crm")

    response = change_connection(admin_client, connection, base_url="https://eu.example.com",
                                 hubspot__accessToken="")

    assert response.status_code == 302, response.context["adminform"].form.errors
    connection.refresh_from_db()
    assert connection.base_url == "https://eu.example.com"
    assert connection_credentials(connection) == {"accessToken": HUBSPOT_TOKEN}
    assert LogEntry.objects.filter(change_message__contains="Base URL").exists()
    assert "credentials" not in LogEntry.objects.latest("action_time").change_message


def test_change_with_a_new_token_replaces_it_and_logs_only_that_it_changed(admin_client):
    add_connection(admin_client, hubspot__accessToken=HUBSPOT_TOKEN)
    connection = Connection.objects.get(name="crm")

    response = change_connection(admin_client, connection, hubspot__accessToken=NEW_TOKEN)

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection_credentials(connection) == {"accessToken": NEW_TOKEN}
    assert NEW_TOKEN not in raw_row(connection)
    latest = LogEntry.objects.latest("action_time")
    assert "credentials (Access token)" in latest.get_change_message()
    assert HUBSPOT_TOKEN not in change_messages() and NEW_TOKEN not in change_messages()
    history = admin_client.get(
        reverse("admin:automation_connection_history", args=[connection.pk])).content.decode()
    change_page = admin_client.get(
        reverse("admin:automation_connection_change", args=[connection.pk])).content.decode()
    for page in (history, change_page):
        assert NEW_TOKEN not in page and HUBSPOT_TOKEN not in page
    assert 'name="provider"' not in change_page  # the provider is fixed once created


def test_missing_credentials_are_form_errors_and_nothing_is_saved(admin_client):
    response = add_connection(admin_client, hubspot__accessToken="")

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["hubspot__accessToken"] == ["Access token is required."]
    assert not Connection.objects.exists()


def test_provider_rules_are_checked_and_typed_secrets_not_echoed(admin_client):
    refresh = "dropbox-refresh-token-typed-9a8b7c"
    response = add_connection(admin_client, provider="dropbox", name="box",
                              dropbox__refreshToken=refresh)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["dropbox__appKey"] == ["App key is required with a refresh token."]
    assert errors["dropbox__appSecret"] == ["App secret is required with a refresh token."]
    assert refresh not in response.content.decode()

    basic = add_connection(admin_client, provider="http", name="api", http__type="basic",
                           http__username="svc")
    assert basic.context["adminform"].form.errors["http__password"] == [
        "Password is required for basic authentication."]

    bad = add_connection(admin_client, provider="", name="not a slug!",
                         base_url="ftp://x", options="[1]")
    form_errors = bad.context["adminform"].form.errors
    assert {"provider", "name", "base_url", "options"} <= set(form_errors)
    assert form_errors["options"] == ["Options must be a JSON object."]
    assert not Connection.objects.exists()


def test_changing_checks_the_merged_set(admin_client):
    add_connection(admin_client, provider="http", name="api", http__type="bearer",
                   http__token="http-token-abcdef123")
    connection = Connection.objects.get(name="api")
    html = admin_client.get(
        reverse("admin:automation_connection_change", args=[connection.pk])).content.decode()
    assert '<option value="bearer" selected>' in html  # not secret: shown
    assert "http-token-abcdef123" not in html

    switched = change_connection(admin_client, connection, http__type="basic",
                                 http__username="svc")

    assert switched.status_code == 200
    assert switched.context["adminform"].form.errors["http__password"] == [
        "Password is required for basic authentication."]
    ok = change_connection(admin_client, connection, http__type="basic", http__username="svc",
                           http__password="http-password-xyz987")
    assert ok.status_code == 302
    connection.refresh_from_db()
    assert connection_credentials(connection) == {
        "type": "basic", "token": "http-token-abcdef123", "username": "svc",
        "password": "http-password-xyz987"}


def test_test_connection_button_records_the_result_on_the_page(admin_client, settings):
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    fake = FakeHubSpot().start()
    try:
        add_connection(admin_client, base_url=fake.url, hubspot__accessToken=fake.token)
        connection = Connection.objects.get(name="crm")
        change_url = reverse("admin:automation_connection_change", args=[connection.pk])
        assert 'id="ef-connection-test"' in admin_client.get(change_url).content.decode()

        test_url = reverse("admin:automation_connection_test", args=[connection.pk])
        assert admin_client.get(test_url).status_code == 403  # POST only
        response = admin_client.post(test_url, follow=True)

        html = response.content.decode()
        assert response.redirect_chain[-1][0] == change_url
        assert "rm: Works (portalId 12345678" in html and "ef-status-ok" in html
        connection.refresh_from_db()
        assert connection.last_test_ok is True
        assert fake.calls[-1].headers["Authorization"] == f"Bearer {fake.token}"

        change_connection(admin_client, connection, base_url=fake.url,
                          hubspot__accessToken=NEW_TOKEN)  # a token the fake rejects
        html = admin_client.post(test_url, follow=True).content.decode()
        assert "401" in html and "ef-status-failed" in html and NEW_TOKEN not in html
    finally:
        fake.stop()


def test_an_optional_secret_can_be_removed(admin_client):
    add_connection(admin_client, provider="dropbox", name="box",
                   dropbox__accessToken="sl.long-lived-token-123", dropbox__refreshToken="r-456789",
                   dropbox__appKey="key-123456", dropbox__appSecret="app-secret-789")
    connection = Connection.objects.get(name="box")
    change_url = reverse("admin:automation_connection_change", args=[connection.pk])
    html = admin_client.get(change_url).content.decode()
    assert 'name="dropbox__refreshToken__clear"' in html
    assert "Remove the stored refresh token" in html

    response = change_connection(admin_client, connection, dropbox__refreshToken__clear="on",
                                 dropbox__appKey__clear="on", dropbox__appSecret__clear="on")

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert connection_credentials(Connection.objects.get(pk=connection.pk)) == {
        "accessToken": "sl.long-lived-token-123"}
    assert "credentials (Refresh token, App key, App secret)" in \
        LogEntry.objects.latest("action_time").get_change_message()
    html = admin_client.get(change_url).content.decode()
    assert 'name="dropbox__refreshToken__clear"' not in html  # nothing left to remove

    refused = change_connection(admin_client, connection, dropbox__accessToken__clear="on")
    assert refused.status_code == 200  # then nothing could authenticate
    assert "dropbox__accessToken" in refused.context["adminform"].form.errors


def test_unreadable_stored_credentials_can_be_entered_again(admin_client):
    add_connection(admin_client, hubspot__accessToken=HUBSPOT_TOKEN)
    connection = Connection.objects.get(name="crm")
    Connection.objects.filter(pk=connection.pk).update(credentials_encrypted="garbage")
    change_url = reverse("admin:automation_connection_change", args=[connection.pk])
    assert "Not set" in admin_client.get(change_url).content.decode()

    blank = change_connection(admin_client, connection)
    assert blank.status_code == 200
    form = blank.context["adminform"].form
    assert "could not be decrypted" in form.non_field_errors()[0]
    assert form.errors["hubspot__accessToken"] == ["Access token is required."]

    fixed = change_connection(admin_client, connection, hubspot__accessToken=NEW_TOKEN)
    assert fixed.status_code == 302
    assert connection_credentials(Connection.objects.get(pk=connection.pk)) == {
        "accessToken": NEW_TOKEN}


def test_admin_adds_a_sql_connection_with_its_password_encrypted(admin_client):
    url = "postgresql://reporting@db.example.com:5432/shop"
    password = "sql-admin-typed-password-93c1"

    response = add_connection(admin_client, provider="sql", name="shop-db",
                              options='{"allowWrites": true, "timeout": 5}',
                              sql__url=url, sql__password=password)

    assert response.status_code == 302, response.context["adminform"].form.errors
    connection = Connection.objects.get(name="shop-db")
    assert connection.options == {"allowWrites": True, "timeout": 5}
    assert connection_credentials(connection) == {"url": url, "password": password}
    assert password not in raw_row(connection)
    html = admin_client.get(
        reverse("admin:automation_connection_change", args=[connection.pk])).content.decode()
    assert url in html and password not in html and "•••• set" in html  # the URL is shown


def test_admin_refuses_a_sql_url_with_a_password_and_loose_options(admin_client):
    response = add_connection(admin_client, provider="sql", name="shop-db",
                              options='{"allowWrites": "yes"}',
                              sql__url="postgresql://reporting:pw@db.example.com/shop")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "Password field" in form.errors["sql__url"][0]
    assert form.errors["options"] == ["allowWrites must be true or false"]
    assert not Connection.objects.filter(name="shop-db").exists()
