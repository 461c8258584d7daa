"""Human tasks (docs/user-guide/human-tasks.md): forms, quorum of distinct people, reminders and
escalation, signed one-click links, and decisions bound to the data the approver saw."""

import json
import re
from datetime import timedelta

import jsonschema
import pytest
import time_machine
import yaml
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from automation.exceptions import DefinitionInvalidError, RunStateError
from automation.models import ApprovalRequest, Run
from automation.services import webhooks
from automation.services.approval_forms import FormDataError
from automation.services.approvals import (
    ApprovalChangedError,
    approval_decide,
    approvals_expire,
    approvals_nudge,
)
from automation.services.runs import run_start
from entities.services import entity_update
from tests.factories import make_order
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {"type": "object", "required": ["amount", "reason"], "properties": {
    "amount": {"type": "number", "title": "Corrected amount", "minimum": 0},
    "reason": {"type": "string", "title": "Reason code", "enum": ["price", "quantity", "other"]},
    "urgent": {"type": "boolean"}}}


def human(**config) -> list:
    return [{"id": "review", "type": "human", "next": "after",
             "config": {"approvers": ["ann@example.com", "bob", "group:finance"], **config}},
            {"id": "after", "type": "function", "function": "test.record"}]


@pytest.fixture
def people(django_user_model):
    users = {name: django_user_model.objects.create_user(
        name, email=f"{name}@example.com", password="x", is_staff=True)
        for name in ("ann", "bob", "cat", "dan")}
    finance = Group.objects.create(name="finance")
    users["cat"].groups.add(finance)
    return users


def waiting(make_process, steps, entity=None):
    run, _ = run_start(process=make_process(steps), trigger={"type": "manual"},
                       entity=entity or make_order(), input={"total": 12000})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    return run, ApprovalRequest.objects.get(run=run)


def status(run) -> str:
    run.refresh_from_db()
    return run.status


# -- quorum -------------------------------------------------------------------------------

def test_quorum_two_of_three_needs_two_distinct_people(make_process, people, calls):
    run, approval = waiting(make_process, human(requiredApprovals=2))
    approval_decide(approval=approval, approved=True, decided_by="ann@example.com",
                    user=people["ann"])
    assert status(run) == Run.Status.WAITING
    # the same person under her other name is still one person
    with pytest.raises(RunStateError, match="already decided"):
        approval_decide(approval=approval, approved=True, decided_by="ann", user=people["ann"])
    assert status(run) == Run.Status.WAITING
    # a group member is the second distinct person
    approval_decide(approval=approval, approved=True, decided_by="cat", user=people["cat"],
                    comment="ok")
    assert status(run) == Run.Status.COMPLETED
    output = run.steps.get(step_id="review").output
    assert output["approved"] is True and output["decidedBy"] == "cat"
    assert [d["decidedBy"] for d in output["decisions"]] == ["ann@example.com", "cat"]
    assert calls and calls[0][1]["approved"] is True


def test_one_rejection_rejects_unless_reject_quorum_says_otherwise(make_process, people):
    run, approval = waiting(make_process, human(requiredApprovals=2, rejectQuorum=2))
    approval_decide(approval=approval, approved=False, decided_by="bob", user=people["bob"])
    assert status(run) == Run.Status.WAITING
    approval_decide(approval=approval, approved=False, decided_by="cat", user=people["cat"])
    assert status(run) == Run.Status.COMPLETED
    assert ApprovalRequest.objects.get(pk=approval.pk).status == ApprovalRequest.Status.REJECTED
    assert run.steps.get(step_id="review").output["approved"] is False

    run2, approval2 = waiting(make_process, human())
    approval_decide(approval=approval2, approved=False, decided_by="bob", user=people["bob"])
    assert ApprovalRequest.objects.get(pk=approval2.pk).status == ApprovalRequest.Status.REJECTED


# -- forms --------------------------------------------------------------------------------

def test_form_data_is_validated_and_becomes_the_step_output(make_process, people):
    run, approval = waiting(make_process, human(form=FORM))
    with pytest.raises(FormDataError) as refused:
        approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"],
                        data={"amount": -5})
    assert refused.value.errors == {"amount": ["Must be at least 0."],
                                    "reason": ["This field is required."]}
    assert status(run) == Run.Status.WAITING and not ApprovalRequest.objects.get().decisions
    approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"],
                    comment="fixed", data={"amount": 99.5, "reason": "price"})
    output = run.steps.get(step_id="review").output
    assert {k: output[k] for k in ("approved", "comment", "data", "decidedBy")} == {
        "approved": True, "comment": "fixed", "data": {"amount": 99.5, "reason": "price"},
        "decidedBy": "bob"}
    assert output["decidedAt"]
    assert run.steps.get(step_id="after").input["data"]["amount"] == 99.5


@pytest.mark.parametrize(("config", "field"), [
    ({"form": {"type": "object", "properties": {"x": {"type": "array"}}}},
     "steps[0].config.form.properties.x"),
    ({"form": {"type": "nonsense"}}, "steps[0].config.form"),
    ({"form": {"type": "object", "properties": {}, "required": ["x"]}},
     "steps[0].config.form.required"),
    ({"rejectQuorum": 0}, "steps[0].config.rejectQuorum"),
    ({"escalateAfter": 1000}, "steps[0].config.escalateTo"),
    ({"timeout": 1000, "remindAfter": 5000}, "steps[0].config.remindAfter"),
    ({"fields": "total"}, "steps[0].config.fields"),
])
def test_bad_human_config_is_refused_naming_the_field(make_process, config, field):
    with pytest.raises(DefinitionInvalidError) as refused:
        make_process(human(**config))
    assert field in refused.value.fields


# -- reminders and escalation --------------------------------------------------------------

@pytest.fixture
def receiver():
    server = EchoServer().start()
    yield server
    server.stop()


def test_reminder_and_escalation_are_sent_once_recorded_and_announced(make_process, people,
                                                                      receiver, admin_client):
    webhooks.webhook_subscription_create(url=f"{receiver.url}/hook", events=["*"],
                                         secret="whsec_human_tasks_0123456789", owner="tests")
    run, approval = waiting(make_process, human(
        approvers=["bob"], timeout=86_400_000, remindAfter=3_600_000, escalateAfter=7_200_000,
        escalateTo=["dan"]))
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]
    nothing = {"reminded": 0, "escalated": 0}
    assert approvals_nudge(timezone.now() + timedelta(minutes=59)) == nothing
    later = timezone.now() + timedelta(hours=2, minutes=1)
    assert approvals_nudge(later) == {"reminded": 1, "escalated": 1}
    assert approvals_nudge(later) == {"reminded": 0, "escalated": 0}  # each once
    assert [m.to for m in mail.outbox[1:]] == [["bob@example.com"], ["dan@example.com"]]
    assert mail.outbox[1].subject.startswith("Reminder") and "Escalated" in mail.outbox[2].subject
    bodies = [json.loads(call.body) for call in receiver.calls]
    assert [b["event"] for b in bodies] == ["approval.requested", "approval.reminded",
                                            "approval.escalated"]
    assert bodies[2]["escalatedTo"] == ["dan"]
    documented = yaml.safe_load(Client().get("/api/schema/").content)["webhooks"]
    for body in bodies:  # what is sent is what the OpenAPI document describes
        jsonschema.validate(body, documented[body["event"]]["post"]["requestBody"]["content"][
            "application/json"]["schema"])
    logs = [entry.get("event") for entry in run.steps.get(step_id="review").logs]
    assert "approval.reminded" in logs and "approval.escalated" in logs
    page = admin_client.get(f"/admin/automation/run/{run.pk}/change/").content.decode()
    assert "reminder sent to bob" in page and "escalated to dan" in page
    # the escalated-to person may decide now
    approval_decide(approval=approval, approved=True, decided_by="dan", user=people["dan"])
    assert status(run) == Run.Status.COMPLETED
    # nothing is left for the deadline
    assert approvals_expire(timezone.now() + timedelta(days=2)) == 0


# -- one-click links ------------------------------------------------------------------------

def links(message) -> dict:
    found = dict(re.findall(r"^(Approve|Reject): \S+?(/approvals/link/\S+)$", message.body, re.M))
    return {"approve": found["Approve"], "reject": found["Reject"]}


def test_a_link_decides_once_without_login(make_process, people):
    run, approval = waiting(make_process, human(approvers=["ann@example.com"]))
    link = links(mail.outbox[0])
    browser = Client()
    page = browser.get(link["approve"])
    assert page.status_code == 200 and b"Approve" in page.content
    assert status(run) == Run.Status.WAITING  # opening the link decides nothing
    done = browser.post(link["approve"], {"comment": "from my phone"})
    assert done.status_code == 200 and b"Decision recorded" in done.content
    assert status(run) == Run.Status.COMPLETED
    output = run.steps.get(step_id="review").output
    assert output["decidedBy"] == "ann@example.com" and output["comment"] == "from my phone"
    again = browser.post(link["reject"])  # the other link of the same email is used up too
    assert again.status_code == 410 and b"nothing was changed" in again.content.lower()
    assert ApprovalRequest.objects.get().status == ApprovalRequest.Status.APPROVED


def test_an_expired_link_is_refused_and_changes_nothing(make_process, people):
    run, approval = waiting(make_process, human(approvers=["ann@example.com"]))
    link = links(mail.outbox[0])
    with time_machine.travel(timezone.now() + timedelta(hours=48, minutes=1)):
        for response in (Client().get(link["approve"]), Client().post(link["approve"])):
            assert response.status_code == 410
            assert b"expired" in response.content
    assert status(run) == Run.Status.WAITING
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.PENDING and approval.decisions == []


def test_a_tampered_link_is_refused(make_process, people):
    waiting(make_process, human(approvers=["ann@example.com"]))
    link = links(mail.outbox[0])["approve"]
    response = Client().post(link.replace("/approvals/link/", "/approvals/link/x"))
    assert response.status_code == 410 and b"not valid" in response.content


def test_a_link_with_a_form_shows_field_errors_first(make_process, people):
    run, _ = waiting(make_process, human(approvers=["ann@example.com"], form=FORM))
    link = links(mail.outbox[0])["approve"]
    refused = Client().post(link, {"data.amount": "abc", "data.reason": "price"})
    assert refused.status_code == 422 and b"Enter a number." in refused.content
    assert status(run) == Run.Status.WAITING
    Client().post(link, {"data.amount": "12.5", "data.reason": "price"})
    assert status(run) == Run.Status.COMPLETED
    assert run.steps.get(step_id="review").output["data"] == {
        "amount": 12.5, "reason": "price", "urgent": False}


# -- version-bound decisions -----------------------------------------------------------------

def test_a_covered_field_changed_while_pending_reissues_the_request(make_process, people):
    order = make_order()
    first_total = order.data["total"]
    run, approval = waiting(make_process, human(approvers=["ann@example.com", "bob"],
                                                requiredApprovals=2, fields=["total"]), order)
    assert approval.snapshot == {"total": first_total} and approval.version == 1
    old_link = links(mail.outbox[0])["approve"]
    approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"])

    entity_update(entity=order, data={"currency": "EUR"}, merge=True)  # not covered
    approval.refresh_from_db()
    assert approval.version == 1 and len(approval.decisions) == 1

    entity_update(entity=order, data={"total": 99999}, merge=True)
    approval.refresh_from_db()
    assert approval.version == 2 and approval.decisions == []  # bob's approval no longer counts
    assert approval.snapshot == {"total": 99999}
    assert approval.changes == [{"field": "total", "before": first_total,
                                 "after": 99999}]
    assert status(run) == Run.Status.WAITING
    assert "re-issued as version 2" in run.steps.get(step_id="review").logs[-1]["message"]
    # the change is shown to the approvers in a new email; the old link is refused
    assert "Changed: total" in mail.outbox[-1].body
    assert Client().post(old_link).status_code == 410
    # a decision made on the version the approver saw does not apply to the new one
    with pytest.raises(ApprovalChangedError):
        approval_decide(approval=approval, approved=True, decided_by="ann@example.com",
                        user=people["ann"], version=1)
    approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"],
                    version=2)
    assert status(run) == Run.Status.WAITING  # still needs two people on version 2
    approval_decide(approval=approval, approved=True, decided_by="ann@example.com",
                    user=people["ann"], version=2)
    assert status(run) == Run.Status.COMPLETED


def test_a_change_not_yet_announced_is_caught_at_the_decision(make_process, people):
    """A write that has not reached the outbox handler (here a queryset update, which
    writes no event) still cannot be approved unseen: the decision compares first."""
    from entities.models import Entity

    order = make_order()
    run, approval = waiting(make_process, human(approvers=["bob"], fields=["total"]), order)
    Entity.objects.filter(pk=order.pk).update(data={**order.data, "total": 5})
    with pytest.raises(ApprovalChangedError):
        approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"])
    approval.refresh_from_db()
    assert approval.version == 2 and approval.snapshot == {"total": 5} and not approval.decisions
    assert status(run) == Run.Status.WAITING
    approval_decide(approval=approval, approved=True, decided_by="bob", user=people["bob"])
    assert status(run) == Run.Status.COMPLETED


def test_by_default_the_whole_data_is_covered(make_process, people):
    order = make_order()
    run, approval = waiting(make_process, human(approvers=["bob"]), order)
    entity_update(entity=order, data={"currency": "EUR"}, merge=True)
    approval.refresh_from_db()
    assert approval.version == 2 and approval.changes[0]["field"] == "currency"
    assert status(run) == Run.Status.WAITING


# -- the inbox ----------------------------------------------------------------------------------

def test_inbox_form_errors_then_decision(make_process, people):
    run, approval = waiting(make_process, human(approvers=["ann@example.com"], form=FORM))
    browser = Client()
    browser.force_login(people["ann"])
    url = f"/admin/automation/approvalrequest/{approval.pk}/decide/"
    page = browser.post(url, {"decision": "approve", "version": "1", "data.amount": "-1",
                              "data.reason": "price"})
    assert page.status_code == 422 and b"Must be at least 0." in page.content
    assert b'value="-1"' in page.content  # what was entered stays
    browser.post(url, {"decision": "approve", "version": "1", "data.amount": "5",
                       "data.reason": "other", "data.urgent": "on"})
    assert status(run) == Run.Status.COMPLETED
    assert run.steps.get(step_id="review").output["data"] == {
        "amount": 5, "reason": "other", "urgent": True}


def test_inbox_filters_and_pages(make_process, people, settings):
    settings.ENTITYFLOW_INBOX_PAGE_SIZE = 2
    for _ in range(3):
        waiting(make_process, human(approvers=["ann@example.com"]))
    waiting(make_process, human(approvers=["bob"]))
    browser = Client()
    browser.force_login(people["ann"])
    inbox = "/admin/automation/approvalrequest/"
    first = browser.get(inbox)
    assert first.context["total"] == 3 and len(first.context["items"]) == 2
    assert len(browser.get(inbox + "?page=2").context["items"]) == 1
    assert browser.get(inbox + "?age=1h").context["total"] == 0
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert browser.get(inbox + "?age=1h").context["total"] == 3
    slug = ApprovalRequest.objects.order_by("created_at").first().run.process.slug
    assert browser.get(inbox + f"?process={slug}").context["total"] == 1


@pytest.mark.parametrize("page", ["docs/user-guide/human-tasks.md", "README.md"])
def test_the_documented_example_is_a_valid_definition(order_type, page):
    from pathlib import Path

    from automation.services.processes import process_save

    text = (Path(__file__).resolve().parents[2] / page).read_text()
    found = re.search(r"```json\n(\{\n  \"name\": \"Correct order total\".*?)\n```", text, re.S)
    definition = json.loads(found.group(1))
    process = process_save(slug="doc-example", name=definition.pop("name"), definition=definition)
    assert process.current_version.definition["steps"][0]["config"]["requiredApprovals"] == 2


def test_a_save_of_an_entity_nobody_waits_on_asks_the_database_nothing(
        make_process, people, django_assert_num_queries, settings):
    from automation.services.approvals import entity_change_matters

    settings.ENTITYFLOW_APPROVAL_WATCH_SECONDS = 600  # no re-read during the test
    from entities.models import EntityEvent

    waited_on, other = make_order(), make_order()
    waiting(make_process, human(approvers=["bob"]), waited_on)
    entity_change_matters(EntityEvent(type="entity.updated", entity=other))  # reads the set
    with django_assert_num_queries(0):
        assert not entity_change_matters(EntityEvent(type="entity.updated", entity=other))
        assert entity_change_matters(EntityEvent(type="entity.updated", entity=waited_on))


def test_three_approvers_at_once_settle_a_two_of_three_quorum_once(make_process, calls):
    """Real row-lock races on PostgreSQL (IMMEDIATE transactions serialize on SQLite)."""
    from tests.reliability.support import at_once

    people = ["x@example.com", "y@example.com", "z@example.com"]
    for _ in range(3):
        calls.clear()
        run, approval = waiting(make_process, human(approvers=people, requiredApprovals=2))
        results = at_once(*[lambda p=p, a=approval: approval_decide(approval=a, approved=True,
                                                                     decided_by=p)
                            for p in people])
        assert sorted(kind for kind, _ in results) == ["error", "ok", "ok"], results
        [loser] = [value for kind, value in results if kind == "error"]
        assert isinstance(loser, RunStateError) and "already approved" in loser.message
        approval.refresh_from_db()
        assert approval.status == ApprovalRequest.Status.APPROVED and len(approval.decisions) == 2
        assert status(run) == Run.Status.COMPLETED
        assert [step for step, _ in calls] == ["after"]  # the next step ran once
