"""The approvals inbox (server side)."""

import pytest
from django.test import Client
from django.urls import reverse

from automation.models import ApprovalRequest, Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

INBOX = reverse("admin:automation_approvalrequest_changelist")


@pytest.fixture
def manager(django_user_model):
    return django_user_model.objects.create_user(
        "manager", email="manager@example.com", password="x", is_staff=True
    )


@pytest.fixture
def waiting_run(order_type):
    process = process_save(
        slug="approve",
        name="Approve Purchase",
        definition={
            "steps": [
                {
                    "id": "require-approval",
                    "type": "human",
                    "next": "finalize",
                    "config": {"approvers": ["manager@example.com"]},
                },
                {"id": "finalize", "type": "function", "function": "test.record"},
            ]
        },
    )
    run, _ = run_start(
        process=process, trigger={"type": "manual"}, entity=make_order(), input={"total": 12000}
    )
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    return run


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def decide_url(approval) -> str:
    return reverse("admin:automation_approval_decide", args=[approval.pk])


def test_inbox_lists_what_the_user_may_decide_with_context(manager, waiting_run):
    html = logged_in(manager).get(INBOX).content.decode()
    assert "Approve Purchase" in html and "require-approval" in html
    assert waiting_run.entity.reference in html and "&quot;total&quot;: 12000" in html
    assert "You decide as <b>manager@example.com</b>" in html


def test_inbox_of_someone_else_is_empty(admin_client, waiting_run):
    html = admin_client.get(INBOX).content.decode()
    assert "Nothing waits for you" in html and "All approval requests" in html


def test_approving_lets_the_run_finish(manager, waiting_run):
    approval = ApprovalRequest.objects.get()
    response = logged_in(manager).post(
        decide_url(approval), {"decision": "approve", "comment": "fine by me"}, follow=True
    )
    assert any("the run is now completed" in str(m) for m in response.context["messages"])
    waiting_run.refresh_from_db()
    assert waiting_run.status == Run.Status.COMPLETED
    approval.refresh_from_db()
    assert approval.decisions[0]["decidedBy"] == "manager@example.com"
    assert approval.decisions[0]["comment"] == "fine by me"


def test_rejecting_records_the_decision(manager, waiting_run):
    approval = ApprovalRequest.objects.get()
    logged_in(manager).post(decide_url(approval), {"decision": "reject", "comment": "too much"})
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.REJECTED


def test_someone_who_is_not_an_approver_is_refused(admin_client, waiting_run):
    approval = ApprovalRequest.objects.get()
    response = admin_client.post(decide_url(approval), {"decision": "approve"}, follow=True)
    assert any(
        "is not one of this step's approvers" in str(m) for m in response.context["messages"]
    )
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING


def test_decide_needs_csrf_and_staff(manager, django_user_model, waiting_run):
    approval = ApprovalRequest.objects.get()
    assert (
        logged_in(manager, enforce_csrf_checks=True)
        .post(decide_url(approval), {"decision": "approve"})
        .status_code
        == 403
    )
    outsider = django_user_model.objects.create_user(
        "o", email="manager2@example.com", password="x"
    )
    assert logged_in(outsider).get(INBOX).status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING


def test_history_lists_every_request_for_those_allowed(admin_client, manager, waiting_run):
    history = reverse("admin:automation_approval_history")
    assert "require-approval" in admin_client.get(history).content.decode()
    assert logged_in(manager).get(history).status_code == 403
