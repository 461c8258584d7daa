"""`email.send` through a real run and Django's email backend (locmem in the tests):
recipients, subject and body templated from the step's scope, bad addresses refused."""

import pytest

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_create

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"customer": {"name": "Ada Lovelace", "email": "ada@example.com"}, "total": 42.5,
         "currency": "EUR"}


def mail_process(*, retries: int = 0, **params):
    config = {"params": params, **({"retries": retries} if retries else {})}
    return process_save(slug="mail", name="Mail", definition={"steps": [
        {"id": "mail", "type": "function", "function": "email.send", "config": config}]})


def run_of(process, entity=None) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=entity)
    run.refresh_from_db()
    return run


@pytest.fixture
def order(order_type):
    return entity_create(entity_type=order_type, reference="ORD-77", data=ORDER)


def test_email_is_sent_with_everything_templated_from_the_scope(order, mailoutbox):
    process = mail_process(
        to=["{{ entity.data.customer.name }} <{{ entity.data.customer.email }}>",
            "ops@example.com, Sales <sales@example.com>"],
        subject="Order {{ entity.reference }} is approved",
        body="Hello {{ entity.data.customer.name }}, your order of {{ entity.data.total }} "
             "{{ entity.data.currency }} is on its way.",
        **{"from": "Shop <shop@example.com>"})

    run = run_of(process, order)

    assert run.status == Run.Status.COMPLETED, run.error
    [message] = mailoutbox
    assert message.to == ["Ada Lovelace <ada@example.com>", "ops@example.com",
                          "Sales <sales@example.com>"]
    assert message.subject == "Order ORD-77 is approved"
    assert message.body == "Hello Ada Lovelace, your order of 42.5 EUR is on its way."
    assert message.from_email == "Shop <shop@example.com>"
    assert run.result == {"sent": 1, "to": message.to, "subject": "Order ORD-77 is approved"}
    step = StepRun.objects.get(run=run)
    assert any(entry["message"].startswith("sent to Ada Lovelace") for entry in step.logs)


def test_without_from_the_default_sender_is_used(order, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "entityflow@example.com"
    run = run_of(mail_process(to="{{ entity.data.customer.email }}", subject="Hi"), order)

    assert run.status == Run.Status.COMPLETED, run.error
    assert mailoutbox[0].from_email == "entityflow@example.com"
    assert mailoutbox[0].to == ["ada@example.com"] and mailoutbox[0].body == ""


def test_a_bad_recipient_fails_the_step_clearly_and_sends_nothing(order, mailoutbox):
    process = mail_process(to=["{{ entity.data.customer.email }}", "not-an-email"],
                           subject="Hi", retries=2)

    run = run_of(process, order)

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "invalid_recipient" and run.error["step"] == "mail"
    assert run.error["message"] == ("email.send: to[1] 'not-an-email' is not a valid "
                                    "email address.")
    assert StepRun.objects.get(run=run).attempt == 1  # retrying cannot fix an address
    assert mailoutbox == []


@pytest.mark.parametrize(("to", "subject", "expected"), [
    ("ada@example.com\nBcc: everyone@example.com", "Hi", "is not an email address"),
    ("", "Hi", "is not an email address"),
    ("ada@example.com", "Hi\nBcc: everyone@example.com", "the subject must be one line"),
])
def test_header_injection_and_empty_recipients_are_refused(order, mailoutbox, to, subject,
                                                           expected):
    run = run_of(mail_process(to=to, subject=subject), order)

    assert run.status == Run.Status.FAILED and expected in run.error["message"]
    assert mailoutbox == []


def test_a_missing_field_in_the_template_names_it(order_type, mailoutbox):
    order = entity_create(entity_type=order_type, reference="ORD-78",
                          data={"customer": {"name": "Alan"}, "total": 3})

    run = run_of(mail_process(to="{{ entity.data.customer.email }}", subject="Hi"), order)

    assert run.status == Run.Status.FAILED
    assert "email" in run.error["message"] and mailoutbox == []
