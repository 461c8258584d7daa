"""Connections, functions, webhooks and API clients in the admin (server side)."""

import pytest
from django.contrib.auth.hashers import check_password
from django.urls import reverse

from automation.models import (
    ApiClient,
    Connection,
    Function,
    WebhookDelivery,
    WebhookSubscription,
)

pytestmark = pytest.mark.django_db


def test_connection_list_is_read_only_and_hides_credentials(admin_client):
    connection = Connection.objects.create(
        provider="hubspot", name="crm", credentials_encrypted="SECRET-BLOB"
    )
    listing = admin_client.get(reverse("admin:automation_connection_changelist")).content.decode()
    assert "crm" in listing and "never tested" in listing
    detail = admin_client.get(reverse("admin:automation_connection_change", args=[connection.pk]))
    assert "SECRET-BLOB" not in detail.content.decode()
    assert admin_client.get(reverse("admin:automation_connection_add")).status_code == 403


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
