"""The Process entity modal's endpoints (server side)."""

import pytest
from django.test import Client
from django.urls import reverse

from automation.models import Run
from automation.services.processes import process_save, process_set_enabled
from automation.views.modal import normalize_dry_run
from tests.factories import make_entity_type, make_order

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [
    {"id": "check", "type": "condition", "condition": "entity.data.total > 0", "next": "ok"},
    {"id": "ok", "type": "function", "function": "test.record"},
]


@pytest.fixture
def order(order_type):
    return make_order(reference="ORD-00001")


@pytest.fixture
def processes(order_type):
    made = {
        "for-orders": process_save(
            slug="for-orders",
            name="For orders",
            entity_type=order_type,
            definition={"steps": STEPS},
        ),
        "for-any": process_save(slug="for-any", name="For any", definition={"steps": STEPS}),
        "for-other": process_save(
            slug="for-other",
            name="Other",
            entity_type=make_entity_type(),
            definition={"steps": STEPS},
        ),
        "off": process_save(
            slug="off", name="Off", entity_type=order_type, definition={"steps": STEPS}
        ),
    }
    process_set_enabled(process=made["off"], enabled=False)
    return made


def url(name, order) -> str:
    return reverse(f"admin:automation_entity_{name}", args=[order.pk])


def test_entity_page_has_the_button_and_modal(admin_client, order):
    html = admin_client.get(
        reverse("admin:entities_entity_change", args=[order.pk])
    ).content.decode()
    assert 'id="ef-process-open"' in html and 'id="ef-process-modal"' in html
    assert url("processes", order) in html


def test_only_enabled_processes_of_the_type_or_of_no_type_are_offered(
    admin_client, order, processes
):
    html = admin_client.get(url("processes", order)).content.decode()
    assert 'value="for-orders"' in html and 'value="for-any"' in html
    assert 'value="for-other"' not in html and 'value="off"' not in html


def test_dry_run_shows_a_preview_or_says_why_not(admin_client, order, processes):
    response = admin_client.get(url("dry_run", order), {"process": "for-orders"})
    html = response.content.decode()
    assert response.status_code == 200 and 'data-process="for-orders"' in html
    assert "check" in html and "entity.data.total &gt; 0" in html and "→ true" in html
    assert "ok" in html and "All requirements hold" in html
    assert admin_client.get(url("dry_run", order), {"process": "for-other"}).status_code == 404


def test_run_starts_a_manual_admin_run_and_reports_its_status(
    admin_client, admin_user, order, processes
):
    response = admin_client.post(url("run", order), {"process": "for-orders"})
    assert response.status_code == 201
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.trigger == {"type": "manual", "source": "admin"}
    assert run.entity_id == order.pk and run.created_by == admin_user
    status = admin_client.get(body["statusUrl"]).json()
    assert status["status"] == "completed" and status["finished"] is True
    assert body["runUrl"] == reverse("admin:automation_run_change", args=[run.pk])


def test_run_refuses_a_process_that_does_not_apply(admin_client, order, processes):
    response = admin_client.post(url("run", order), {"process": "off"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == {"process": ["Not an applicable process."]}
    assert not Run.objects.exists()


def test_run_needs_csrf_and_permission(admin_user, django_user_model, order, processes):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(url("run", order), {"process": "for-orders"}).status_code == 403
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("s", password="x", is_staff=True))
    assert staff.get(url("processes", order)).status_code == 403
    assert staff.post(url("run", order), {"process": "for-orders"}).status_code == 403
    assert not Run.objects.exists()


def test_dry_run_shape_for_the_modal():
    shaped = normalize_dry_run(
        {
            "steps": [
                {
                    "id": "check",
                    "type": "condition",
                    "condition": "x > 1",
                    "value": False,
                    "evaluation": "false",
                    "wouldRun": "yes",
                },
                {
                    "id": "later",
                    "type": "condition",
                    "condition": "result.ok",
                    "value": None,
                    "evaluation": "unknown",
                    "wouldRun": "maybe",
                },
            ],
            "skipped": ["ok"],
            "enabled": False,
            "applicable": True,
            "unmetRequirements": [{"message": "Email missing", "status": "approved"}],
        }
    )
    check, later, skipped = shaped["steps"]
    assert (check["value_text"], check["value_class"], check["mark"]) == (
        "false",
        "ef-val-false",
        "✓",
    )
    assert later["would_run"] == "maybe" and later["value_text"] == "known when it runs"
    assert skipped["id"] == "ok" and skipped["would_run"] == "no"
    assert shaped["unmet"][0]["message"] == "Email missing"
    assert shaped["warnings"] == ["The process is disabled; Run will be refused."]
    assert normalize_dry_run({})["unmet"] is None
