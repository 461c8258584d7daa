"""The entity processing control panel and the batch page (server side)."""

import pytest
from django.test import Client
from django.urls import reverse

from automation.models import Batch, Run
from automation.services.processes import process_save
from entities.services import external_link_upsert
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

PANEL = reverse("admin:automation_batch_changelist")
COUNT = reverse("admin:automation_panel_count")
START = reverse("admin:automation_panel_start")


@pytest.fixture
def orders(order_type):
    made = [make_order(reference=f"ORD-{n:05d}") for n in range(1, 7)]
    make_order(reference="ORD-00099", customer={"name": "No email"})  # stays `received`
    external_link_upsert(entity=made[0], provider="hubspot", object_type="deal", external_id="1")
    return made


@pytest.fixture
def picky(order_type):
    """Fails for ORD-00002 and ORD-00003 (condition on entity data -> a raising function)."""
    return process_save(
        slug="picky",
        name="Picky",
        entity_type=order_type,
        definition={
            "steps": [
                {
                    "id": "check",
                    "type": "condition",
                    "condition": 'entity.reference in ["ORD-00002", "ORD-00003"]',
                    "next": "boom",
                    "config": {"else": "fine"},
                },
                {"id": "boom", "type": "function", "function": "test.boom"},
                {"id": "fine", "type": "function", "function": "test.record"},
            ]
        },
    )


def test_panel_renders_types_statuses_processes_and_providers(admin_client, orders, picky):
    response = admin_client.get(PANEL)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Entity processing" in html and 'id="ef-panel-options"' in html
    assert (
        '"slug": "picky"' in html and "Has a hubspot link" in html and "Has no dropbox link" in html
    )


def test_count_applies_every_filter(admin_client, orders, order_type):
    def count(**params):
        return admin_client.get(COUNT, {"entity_type": order_type.pk, **params}).json()["count"]

    assert count() == 7
    assert count(status="approved") == 6
    assert count(search="0009") == 1
    assert count(link="has:hubspot") == 1
    assert count(link="lacks:hubspot") == 6
    assert count(created_from="2000-01-01", created_to="2999-01-01") == 7
    assert count(updated_to="2000-01-01") == 0


def test_count_reports_bad_filters_as_field_errors(admin_client):
    body = admin_client.get(COUNT, {"entity_type": "x", "created_from": "31/01"}).json()
    assert set(body["error"]["fields"]) == {"entity_type", "created_from"}


def test_start_creates_the_batch_and_answers_with_its_page(admin_client, orders, picky, order_type):
    response = admin_client.post(
        START, {"entity_type": order_type.pk, "status": "approved", "process": "picky"}
    )
    assert response.status_code == 201
    batch = Batch.objects.get()
    assert response.json() == {
        "id": str(batch.pk),
        "total": 6,
        "url": reverse("admin:automation_batch_change", args=[batch.pk]),
    }
    assert batch.filter == {"status": "approved"}
    # the test queue runs in-process, so the batch has already run
    progress = admin_client.get(reverse("admin:automation_batch_progress", args=[batch.pk])).json()
    assert (progress["done"], progress["failed"], progress["percent"]) == (4, 2, 100.0)


def test_start_refuses_a_process_of_another_type(admin_client, orders, order_type):
    from tests.factories import make_entity_type

    other = make_entity_type()
    process_save(
        slug="other",
        name="Other",
        entity_type=other,
        definition={"steps": [{"id": "a", "type": "function", "function": "test.record"}]},
    )
    response = admin_client.post(START, {"entity_type": order_type.pk, "process": "other"})
    assert response.status_code == 422 and "process" in response.json()["error"]["fields"]
    assert not Batch.objects.exists()


def test_batch_page_outcomes_and_retry_failed(admin_client, orders, picky, order_type):
    admin_client.post(
        START, {"entity_type": order_type.pk, "status": "approved", "process": "picky"}
    )
    batch = Batch.objects.get()
    page = reverse("admin:automation_batch_change", args=[batch.pk])

    html = admin_client.get(page).content.decode()
    assert "ef-progress" in html and "Retry failed (2)" in html
    failed = admin_client.get(
        reverse("admin:automation_batch_outcomes", args=[batch.pk]), {"show": "failed"}
    ).content.decode()
    assert failed.count('data-status="failed"') == 2 and "the warehouse API said no" in failed

    response = admin_client.post(
        reverse("admin:automation_batch_retry", args=[batch.pk]), follow=True
    )
    assert any("Retrying 2 failed run(s)" in str(m) for m in response.context["messages"])
    retried = Run.objects.filter(batch=batch, rerun_of__isnull=False)
    assert sorted(r.status for r in retried) == ["failed", "failed"]  # it always raises
    for run in retried:  # only the failed step ran again: what came before was kept
        ran = [s for s in run.steps.all() if not any("kept from run" in line["message"]
                                                     for line in s.logs)]
        assert [s.step_id for s in ran] == [run.rerun_of.error["step"]]
    html = admin_client.get(page).content.decode()
    assert "Retry failed (2)" in html  # the new attempts, counted once per entity


def test_cancel(admin_client, orders, picky, order_type, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}  # still fanning out
    admin_client.post(START, {"entity_type": order_type.pk, "process": "picky"})
    batch = Batch.objects.get()
    admin_client.post(reverse("admin:automation_batch_cancel", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED


def test_cancel_of_a_finished_batch_says_so_and_changes_nothing(admin_client, orders, picky,
                                                                 order_type):
    admin_client.post(START, {"entity_type": order_type.pk, "process": "picky"})
    batch = Batch.objects.get()
    page = admin_client.post(reverse("admin:automation_batch_cancel", args=[batch.pk]),
                             follow=True).content.decode()
    assert "already finished" in page
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED


def test_panel_needs_permission_and_csrf(admin_user, django_user_model, order_type, picky):
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("s", password="x", is_staff=True))
    assert staff.get(PANEL).status_code == 403
    assert staff.get(COUNT, {"entity_type": order_type.pk}).status_code == 403

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(START, {"entity_type": order_type.pk, "process": "picky"}).status_code == 403
    assert not Batch.objects.exists()
