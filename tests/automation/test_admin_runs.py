"""Run history and the run page (server side)."""

import pytest
from django.test import Client
from django.urls import reverse

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:automation_run_changelist")


def process(slug: str, steps: list, **kwargs):
    return process_save(slug=slug, name=slug.title(), definition={"steps": steps}, **kwargs)


def start(proc, **kwargs) -> Run:
    run, _ = run_start(process=proc, trigger={"type": "manual", "source": "test"}, **kwargs)
    run.refresh_from_db()
    return run


@pytest.fixture
def failing():
    return process(
        "failing",
        [
            {"id": "prepare", "type": "function", "function": "test.record", "next": "ship"},
            {"id": "ship", "type": "function", "function": "test.boom"},
        ],
    )


@pytest.fixture
def waiting():
    return process(
        "waiting", [{"id": "ok", "type": "human", "config": {"approvers": ["someone@example.com"]}}]
    )


def page(run) -> str:
    return reverse("admin:automation_run_change", args=[run.pk])


def test_changelist_filters_by_status_process_and_entity_type(admin_client, failing, order_type):
    ok = process("ok", [{"id": "a", "type": "function", "function": "test.record"}])
    bad = start(failing, entity=make_order())
    start(ok)

    failed = admin_client.get(CHANGELIST, {"status__exact": "failed"}).context["cl"].result_list
    by_process = (
        admin_client.get(CHANGELIST, {"process__id__exact": ok.pk}).context["cl"].result_list
    )
    by_type = admin_client.get(CHANGELIST, {"entity_type": order_type.pk})

    assert [r.pk for r in failed] == [bad.pk]
    assert [r.process_id for r in by_process] == [ok.pk]
    assert [r.pk for r in by_type.context["cl"].result_list] == [bad.pk]
    assert "ef-status-failed" in by_type.content.decode()


def test_run_page_shows_timeline_error_traceback_and_logs(admin_client, failing):
    run = start(failing)
    html = admin_client.get(page(run)).content.decode()

    assert html.count('class="ef-s-completed"') == 1 and html.count('class="ef-s-failed"') == 1
    assert "the warehouse API said no" in html  # the banner and the Errors tab
    assert "function_error" in html
    assert "in boom" in html  # traceback summary, from the step's logs
    assert "Retry from failed step" in html and "Cancel run" not in html


def test_retry_calls_the_service_and_reports_the_new_status(admin_client, failing):
    run = start(failing)
    response = admin_client.post(reverse("admin:automation_run_retry", args=[run.pk]), follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any("Retrying from the failed step" in m for m in messages)
    retried = run.reruns.get()  # a new attempt, linked to the failed run
    assert retried.status == Run.Status.FAILED  # it fails again: the function always raises
    assert retried.steps.get(step_id="ship").attempt == 1
    assert response.redirect_chain[-1][0] == page(retried)


def test_a_refused_action_shows_the_service_message(admin_client, waiting):
    run = start(waiting)
    response = admin_client.post(reverse("admin:automation_run_retry", args=[run.pk]), follow=True)
    assert any("Only a failed run can be retried" in str(m) for m in response.context["messages"])


def test_cancel_stops_a_waiting_run(admin_client, waiting):
    run = start(waiting)
    assert "Cancel run" in admin_client.get(page(run)).content.decode()
    admin_client.post(reverse("admin:automation_run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED


def test_status_endpoint(admin_client, failing):
    run = start(failing)
    body = admin_client.get(reverse("admin:automation_run_status", args=[run.pk])).json()
    assert body["status"] == "failed" and body["finished"] is True
    assert body["error"]["step"] == "ship" and body["url"] == page(run)


def test_unknown_or_malformed_run_ids_are_404(admin_client):
    assert (
        admin_client.get(reverse("admin:automation_run_change", args=["nope"])).status_code == 404
    )
    missing = "00000000-0000-0000-0000-000000000000"
    assert (
        admin_client.get(reverse("admin:automation_run_status", args=[missing])).status_code == 404
    )


def test_actions_need_csrf_and_staff_and_permission(admin_user, django_user_model, failing):
    run = start(failing)
    retry = reverse("admin:automation_run_retry", args=[run.pk])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(retry).status_code == 403

    outsider = Client()
    outsider.force_login(django_user_model.objects.create_user("outsider", password="x"))
    assert outsider.get(page(run)).status_code == 302
    assert outsider.post(retry).status_code == 302

    staff = Client()
    staff.force_login(django_user_model.objects.create_user("staff", password="x", is_staff=True))
    assert staff.get(page(run)).status_code == 403
    assert staff.post(retry).status_code == 403
    run.refresh_from_db()
    assert run.steps.get(step_id="ship").attempt == 1


def test_run_history_filters_by_priority_and_the_run_page_shows_it(admin_client):
    ok = process("ok", [{"id": "a", "type": "function", "function": "test.record"}])
    urgent = start(ok, priority="high")
    start(ok)

    high = admin_client.get(CHANGELIST, {"priority__exact": "high"}).context["cl"].result_list
    assert [r.pk for r in high] == [urgent.pk]
    html = admin_client.get(page(urgent)).content.decode()
    assert '<span id="ef-run-priority">high priority</span>' in html
