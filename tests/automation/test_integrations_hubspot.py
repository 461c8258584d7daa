"""The seed scenario end to end against the fake HubSpot on 127.0.0.1: an order reaching
`received` becomes a deal, a second run updates the same deal, and the vendor's 429 and
401 answers are handled as docs/user-guide/integrations.md says."""


import pytest

from automation.api.services import function_save
from automation.connections.services import (
    connection_create,
    connection_credentials,
    connection_test,
    connection_update,
)
from automation.models import Connection, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_create, entity_update

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"customer": {"name": "Ada Lovelace"}, "total": 1500.5}  # no email: stays received
WRONG_TOKEN = "pat-na1-99999999-wrong-token-0000000000"


@pytest.fixture
def hubspot_connection(hubspot_fake):
    return connection_create(provider="hubspot", name="hubspot-fake", base_url=hubspot_fake.url,
                             credentials={"accessToken": hubspot_fake.token})


def copy_order_process(order_type, connection, *, retries=0):
    function_save(name="copy-order-to-hubspot", action="hubspot.upsert_deal",
                  connection=connection, config={
                      "dealname": "Order {{ entity.reference }}",
                      "properties": {"amount": "{{ entity.data.total }}",
                                     "dealstage": "appointmentscheduled", "pipeline": "default"}})
    step = {"id": "copy", "type": "function", "function": "copy-order-to-hubspot"}
    if retries:
        step["config"] = {"retries": retries}
    return process_save(
        slug="copy-order-to-hubspot", name="Copy order to HubSpot", entity_type=order_type,
        definition={"steps": [step], "triggers": [
            {"type": "status", "config": {"entityType": "order", "status": "received"}}]})


def only_run(process) -> Run:
    runs = list(Run.objects.filter(process=process))
    assert len(runs) == 1
    return runs[0]


def test_order_received_becomes_a_deal_and_a_rerun_updates_the_same_deal(
        order_type, hubspot_fake, hubspot_connection):
    hubspot_fake.searchable = False  # indexing lag: only the stored link can find the deal
    process = copy_order_process(order_type, hubspot_connection)

    order = entity_create(entity_type=order_type, reference="ORD-1", data=ORDER)

    run = only_run(process)
    assert run.status == Run.Status.COMPLETED, run.error
    [deal] = hubspot_fake.objects["deals"].values()
    assert deal["properties"]["dealname"] == "Order ORD-1"
    assert deal["properties"]["amount"] == "1500.5"
    assert run.result["id"] == deal["id"] and run.result["created"] is True
    link = order.external_links.get(provider="hubspot", object_type="deal")
    assert link.external_id == deal["id"]
    assert link.url == f"https://app.hubspot.com/contacts/12345678/record/0-3/{deal['id']}"

    entity_update(entity=order, data={**ORDER, "total": 99})
    rerun, created = run_start(process=process, trigger={"type": "manual"}, entity=order)

    rerun.refresh_from_db()
    assert created and rerun.status == Run.Status.COMPLETED, rerun.error
    assert list(hubspot_fake.objects["deals"]) == [deal["id"]]
    assert hubspot_fake.objects["deals"][deal["id"]]["properties"]["amount"] == "99"
    assert rerun.result["created"] is False
    assert hubspot_fake.count(f"/crm/v3/objects/deals/{deal['id']}", "PATCH") == 1
    assert order.external_links.count() == 1


def test_a_short_429_is_waited_out_in_the_worker(order_type, hubspot_fake, hubspot_connection):
    hubspot_fake.rate_limit(times=1, retry_after=1)
    process = copy_order_process(order_type, hubspot_connection)

    entity_create(entity_type=order_type, reference="ORD-2", data=ORDER)

    run = only_run(process)
    assert run.status == Run.Status.COMPLETED, run.error
    assert hubspot_fake.count("/crm/v3/objects/deals/search") == 2  # the 429, then the retry
    assert len(hubspot_fake.objects["deals"]) == 1
    assert StepRun.objects.get(run=run).attempt == 1


def test_a_longer_429_reschedules_the_step_after_retry_after(
        order_type, hubspot_fake, hubspot_connection, settings):
    settings.HUBSPOT_RATE_LIMIT_MAX_WAIT = 0  # hand every 429 to the engine
    # Without a rate limit: with one, a 429 puts the step off instead of failing an
    # attempt (tests/automation/test_ratelimit.py)
    connection_update(connection=hubspot_connection, options={"rateLimit": None})
    hubspot_fake.rate_limit(times=1, retry_after=1)
    process = copy_order_process(order_type, hubspot_connection, retries=2)

    entity_create(entity_type=order_type, reference="ORD-3", data=ORDER)

    run = only_run(process)
    assert run.status == Run.Status.COMPLETED, run.error
    step = StepRun.objects.get(run=run)
    assert step.attempt == 2
    retry_log = next(e["message"] for e in step.logs if "retrying in" in e["message"])
    assert "429" in retry_log and float(retry_log.split("retrying in ")[1].rstrip("s")) >= 1
    assert hubspot_fake.count("/crm/v3/objects/deals/search") == 2


def test_a_rejected_token_fails_the_step_at_once_without_retrying(
        order_type, hubspot_fake, hubspot_connection):
    connection = connection_create(provider="hubspot", name="hubspot-wrong",
                                   base_url=hubspot_fake.url,
                                   credentials={"accessToken": WRONG_TOKEN})
    process = copy_order_process(order_type, connection, retries=3)

    entity_create(entity_type=order_type, reference="ORD-4", data=ORDER)

    run = only_run(process)
    assert run.status == Run.Status.FAILED
    assert len(hubspot_fake.calls) == 1
    assert run.error["code"] == "connector_auth_failed" and run.error["step"] == "copy"
    assert "401" in run.error["message"] and "token" in run.error["message"]
    assert "hubspot-wrong" in run.error["message"]
    assert WRONG_TOKEN not in str(run.error)
    step = StepRun.objects.get(run=run)
    assert step.attempt == 1 and step.status == StepRun.Status.FAILED
    assert not Run.objects.get(pk=run.pk).entity.external_links.exists()


def test_without_a_connection_the_step_fails_with_a_clear_message(order_type):
    process = process_save(slug="contact", name="Contact", definition={"steps": [
        {"id": "contact", "type": "function", "function": "hubspot.upsert_contact",
         "config": {"retries": 2, "params": {"email": "a@example.com"}}}]})

    run, _ = run_start(process=process, trigger={"type": "manual"})

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "connection_missing"
    assert run.error["message"].startswith("No hubspot connection configured")
    assert StepRun.objects.get(run=run).attempt == 1


def test_a_builtin_name_uses_the_only_connection_and_renders_its_params(
        order_type, hubspot_fake, hubspot_connection):
    process = process_save(slug="contact", name="Contact", entity_type=order_type, definition={
        "steps": [{"id": "contact", "type": "function", "function": "hubspot.upsert_contact",
                   "config": {"params": {
                       "email": "{{ entity.data.customer.email }}",
                       "properties": {"firstname": "{{ entity.data.customer.name }}",
                                      "lifecyclestage": "customer"}}}}]})
    order = entity_create(entity_type=order_type, reference="ORD-5", data={
        "customer": {"name": "Grace", "email": "grace@example.com"}, "total": 10})

    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order)

    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    [contact] = hubspot_fake.objects["contacts"].values()
    assert contact["properties"]["email"] == "grace@example.com"
    assert contact["properties"]["firstname"] == "Grace"
    assert order.external_links.get(provider="hubspot").object_type == "contact"


def test_a_function_with_a_connection_of_another_provider_is_refused(hubspot_connection):
    from automation.exceptions import FunctionConfigInvalidError

    dropbox = connection_create(provider="dropbox", name="box",
                                credentials={"accessToken": "sl.u.abcdefghijk"})
    with pytest.raises(FunctionConfigInvalidError) as caught:
        function_save(name="deal", action="hubspot.upsert_deal", connection=dropbox,
                      config={"dealname": "x"})
    assert "needs a hubspot connection" in caught.value.message


def test_credentials_are_encrypted_at_rest(hubspot_fake, hubspot_connection):
    stored = Connection.objects.values_list("credentials_encrypted", flat=True).get(
        pk=hubspot_connection.pk)
    assert hubspot_fake.token not in stored and "accessToken" not in stored
    assert connection_credentials(hubspot_connection) == {"accessToken": hubspot_fake.token}


def test_connection_test_records_what_it_learnt(hubspot_fake, hubspot_connection):
    ok, message = connection_test(hubspot_connection)

    hubspot_connection.refresh_from_db()
    assert ok is True and hubspot_connection.last_test_ok is True
    assert "portalId 12345678" in message and message == hubspot_connection.last_test_message
    assert hubspot_connection.last_tested_at is not None


def test_connection_test_reports_a_rejected_token_without_it(hubspot_fake):
    connection = connection_create(provider="hubspot", name="hubspot-wrong",
                                   base_url=hubspot_fake.url,
                                   credentials={"accessToken": WRONG_TOKEN})

    ok, message = connection_test(connection)

    connection.refresh_from_db()
    assert ok is False and connection.last_test_ok is False
    assert "401" in message and WRONG_TOKEN not in message
