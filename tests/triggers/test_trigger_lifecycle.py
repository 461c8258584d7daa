"""What admins and senders see around triggers: deleting a process takes its schedule
with it at once, the process page says when it runs next, and an inbound webhook is
answered once its run is queued, before any step has run."""

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule

from automation.models import ApiProcess, Run, StepRun
from automation.triggers.schedules import FIRE
from integrations.signing import sign

pytestmark = pytest.mark.django_db

NINE_NY = {"type": "schedule", "config": {"cron": "0 9 * * *", "timezone": "America/New_York"}}
SECRET = "whsec_lifecycle_0123456789"


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456")
    client = Client()
    client.force_login(user)
    return client


def test_deleting_a_process_in_the_admin_removes_its_schedule_at_once(
    save_process, committed, admin_client
):
    process = save_process("nightly", [NINE_NY])
    keep = save_process("keeper", [NINE_NY])
    assert Schedule.objects.filter(func=FIRE).count() == 2

    with committed():
        response = admin_client.post(
            f"/admin/automation/apiprocess/{process.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ApiProcess.objects.filter(pk=process.pk).exists()
    assert [row.args for row in Schedule.objects.filter(func=FIRE)] == [f"({keep.pk}, 0)"]


def test_bulk_delete_in_the_admin_removes_every_schedule(save_process, committed, admin_client):
    processes = [save_process(f"nightly-{n}", [NINE_NY]) for n in range(3)]
    with committed():
        response = admin_client.post("/admin/automation/apiprocess/", {
            "action": "delete_selected", "post": "yes",
            "_selected_action": [p.pk for p in processes]})
    assert response.status_code == 302
    assert not Schedule.objects.filter(func=FIRE).exists()


def test_the_process_page_shows_the_next_scheduled_run(save_process, admin_client):
    with time_machine.travel(datetime(2026, 3, 6, 20, 0, tzinfo=UTC), tick=False):
        process = save_process("daily-report", [NINE_NY])
        page = admin_client.get(f"/admin/automation/apiprocess/{process.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "next scheduled run" in html
    # 09:00 in New York on 7 March 2026 (EST) is 14:00 UTC; the admin shows UTC.
    assert "March 7, 2026, 2 p.m." in html or "Mar. 7, 2026, 2 p.m." in html


@pytest.fixture
def queued(settings, monkeypatch):
    """Steps go onto the broker for a worker, as in production (tests run them inline)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


@pytest.mark.django_db(transaction=True)
def test_a_webhook_is_answered_with_its_run_queued_not_executed(queued):
    from automation.services.processes import process_save

    process_save(slug="shop-orders", name="Shop orders", definition={
        "steps": [{"id": "echo", "type": "function", "function": "noop"}],
        "triggers": [{"type": "webhook", "config": {
            "path": "/webhooks/shop", "validateSignature": True, "secret": SECRET}}]})
    raw = json.dumps({"order": 42}).encode()
    response = Client().post("/hooks/webhooks/shop", raw, content_type="application/json",
                             headers={"X-Entityflow-Signature": sign(SECRET, raw)})

    assert response.status_code == 202, response.content
    run = Run.objects.get()
    assert run.status == Run.Status.PENDING and run.input == {"order": 42}
    assert list(StepRun.objects.filter(run=run).values_list("status", "started_at")) == [
        ("pending", None)]
    assert queued.queue_size() == 1  # the worker's doorbell is rung; nothing ran in the request
