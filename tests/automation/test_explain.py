"""Explain (automation.services.explain, POST /api/entities/{id}/explain): a demo order's
processes, each with the right would-start or why-not, and nothing written or called."""

import pytest
from django.apps import apps
from django.db import connections, router

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import ApiProcess, ProcessTrigger, Run
from automation.services.breaker import pause
from automation.services.explain import explain, merge_patch
from automation.services.processes import process_save
from entities.models import Entity, EntityEvent
from tests.factories import make_order

NO_EMAIL = {"customer": {"name": "Ada Lovelace"}, "total": 120, "items": 2, "currency": "EUR"}


def row_counts() -> dict[str, int]:
    """Every table of every installed model (auto-created join tables too), each counted
    in its own database (on SQLite the task queue's tables have a file of their own)."""
    counts = {}
    for model in apps.get_models(include_auto_created=True):
        alias = router.db_for_read(model)
        table = model._meta.db_table
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {connections[alias].ops.quote_name(table)}")  # noqa: S608
            counts[f"{alias}.{table}"] = cursor.fetchone()[0]
    return counts


def status_trigger(status, condition=None):
    trigger = {"type": "status", "config": {"entityType": "order", "status": status}}
    if condition:
        trigger["condition"] = condition
    return trigger


def demo_processes(order_type, hubspot_fake):
    """Six processes of the order type, one for each answer explain gives."""
    hubspot = connection_create(provider="hubspot", name="hubspot-fake",
                                base_url=hubspot_fake.url,
                                credentials={"accessToken": hubspot_fake.token})
    function_save(name="copy-order-to-hubspot", action="hubspot.upsert_deal",
                  connection=hubspot, config={
                      "dealname": "Order {{ entity.reference }}",
                      "properties": {"amount": "{{ entity.data.total }}",
                                     "dealstage": "appointmentscheduled", "pipeline": "default"}})
    noop = [{"id": "a", "type": "function", "function": "noop"}]

    def save(slug, steps, triggers, **kwargs):
        return process_save(slug=slug, name=slug.replace("-", " ").title(), entity_type=order_type,
                            definition={"steps": steps, "triggers": triggers}, **kwargs)

    save("copy-to-hubspot", [
        {"id": "copy", "type": "function", "function": "copy-order-to-hubspot",
         "config": {"input": {"reference": "entity.reference", "total": "entity.data.total"}},
         "next": "done"},
        {"id": "done", "type": "function", "function": "noop"}], [status_trigger("approved")])
    save("big-orders", noop, [status_trigger("approved", "entity.data.total > 10000")])
    save("broken-condition", noop, [status_trigger("approved", "entity.data.missing.deep > 1")])
    save("disabled-one", noop, [status_trigger("approved")], enabled=False)
    pause(process=save("paused-one", noop, [status_trigger("approved")]),
          reason="30 runs for one entity in a minute")
    save("on-shipped", noop, [status_trigger("shipped")])
    save("manual-only", noop, [{"type": "manual"}])


def by_slug(answer):
    return {p["process"]: p for p in answer["processes"]}


def codes(process):
    return [r["code"] for r in process["reasons"]]


def check_demo_answer(answer):
    processes = by_slug(answer)
    assert sorted(processes) == sorted(ApiProcess.objects.values_list("slug", flat=True))
    copy = processes["copy-to-hubspot"]
    assert copy["wouldStart"] is True and copy["reasons"] == []
    assert [s["id"] for s in copy["firstSteps"]] == ["copy", "done"]
    first = copy["firstSteps"][0]
    assert first["input"] == {"reference": "ORD-X1", "total": 120}
    assert first["function"] == "copy-order-to-hubspot"

    big = processes["big-orders"]
    assert big["wouldStart"] is False and codes(big) == ["condition_false"]
    assert big["reasons"][0]["seen"] == {"entity.data.total": 120}

    broken = processes["broken-condition"]
    assert broken["wouldStart"] is False and codes(broken) == ["condition_error"]
    assert "missing" in broken["reasons"][0]["message"]

    disabled = processes["disabled-one"]
    assert disabled["wouldStart"] is False and codes(disabled) == ["disabled"]
    assert disabled["triggers"][0]["outcome"] == "starts"  # it would, were it enabled

    paused = processes["paused-one"]  # its circuit breaker holds its starts
    assert paused["wouldStart"] is False and codes(paused) == ["paused"]
    assert paused["triggers"][0]["outcome"] == "starts"

    assert codes(processes["on-shipped"]) == ["trigger_not_reached"]
    assert codes(processes["manual-only"]) == ["no_entity_trigger"]


@pytest.mark.django_db(transaction=True)
def test_demo_order_every_process_with_why_and_nothing_written_nor_called(
        order_type, hubspot_fake):
    """Real commits (transaction=True): explain's savepoint is the outermost transaction
    here, as in a request; the fake vendor sees no request at all."""
    demo_processes(order_type, hubspot_fake)
    order = make_order(reference="ORD-X1", data=NO_EMAIL)
    assert order.status == "received"
    before = row_counts()
    events_before = list(EntityEvent.objects.values_list("id", "type"))

    answer = explain(entity=order, changes={"customer": {"email": "ada@example.com"}})

    assert row_counts() == before
    assert list(EntityEvent.objects.values_list("id", "type")) == events_before
    assert hubspot_fake.calls == []
    assert Run.objects.count() == 0
    order.refresh_from_db()
    assert order.status == "received" and "email" not in order.data["customer"]
    assert ProcessTrigger.objects.filter(skipped_count__gt=0).count() == 0

    assert answer["status"] == {"from": "received", "to": "approved",
                                "passesThrough": ["approved"]}
    assert answer["data"]["customer"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert all(r["holds"] for r in answer["requirements"])
    assert [e["type"] for e in answer["events"]] == ["entity.status_changed"]
    check_demo_answer(answer)


@pytest.mark.django_db
def test_inside_a_callers_transaction_only_the_savepoint_is_undone(
        order_type, hubspot_fake, dispatched_events, caplog):
    demo_processes(order_type, hubspot_fake)
    order = make_order(reference="ORD-X1", data=NO_EMAIL)
    before, handed = row_counts(), len(dispatched_events)
    caplog.clear()
    answer = explain(entity=order, changes={"customer": {"email": "ada@example.com"}})
    assert row_counts() == before and hubspot_fake.calls == []
    check_demo_answer(answer)
    # a rehearsal: no subscriber was asked, so the dispatch's condition check logged nothing
    assert len(dispatched_events) == handed
    assert not [r for r in caplog.records if r.name.startswith("automation.triggers")]


@pytest.mark.django_db
def test_without_a_change_requirements_say_why_not(order_type):
    order = make_order(reference="ORD-X2", data=NO_EMAIL)
    answer = explain(entity=order)
    assert answer["status"] == {"from": "received", "to": "received", "passesThrough": []}
    unmet = [r for r in answer["requirements"] if not r["holds"]]
    assert [r["requirement"] for r in unmet] == ["Customer email present"]
    assert unmet[0]["message"] == "The customer's email address is missing."


@pytest.mark.django_db
def test_a_status_it_may_not_enter_is_an_answer_not_an_error(order_type):
    order = make_order(reference="ORD-X3", data=NO_EMAIL)
    answer = explain(entity=order, status="shipped")
    assert answer["transition"]["allowed"] is False
    assert answer["status"]["to"] == "received"
    answer = explain(entity=order, changes={"customer": {"email": "a@b.example"}},
                     status="approved")
    # the patch alone moves it to approved already: no transition is left to make
    assert answer["status"]["to"] == "approved"


def test_merge_patch_follows_rfc_7386():
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None, "e": 4}, "d": [1]}) == \
        {"a": {"c": 2, "e": 4}, "d": [1]}
    assert merge_patch({"a": 1}, {}) == {"a": 1}


@pytest.mark.django_db
def test_entity_left_as_it_was_in_the_callers_object(order_type):
    order = make_order(reference="ORD-X4", data=NO_EMAIL)
    explain(entity=order, changes={"total": 5})
    assert order.data["total"] == 120
    assert Entity.objects.get(pk=order.pk).data["total"] == 120


# -- flow control (docs/user-guide/explain.md#flow-control) ---------------------------------

def flow_processes(order_type, order):
    """Processes whose flow control would hold the order's approval back, each in its own
    way, with the marks and the running run that make it so."""
    from datetime import timedelta

    from django.utils import timezone

    from automation.models import DebounceMark, DedupeMark
    from automation.services.runs import run_start

    noop = [{"id": "a", "type": "function", "function": "noop"}]

    def save(slug, triggers, steps=noop, **definition):
        return process_save(slug=slug, name=slug, entity_type=order_type,
                            definition={"steps": steps, "triggers": triggers, **definition})

    approved = status_trigger("approved")
    queued = save("one-at-a-time", [approved], concurrency={"limit": 1},
                  steps=[{"id": "pause", "type": "wait", "config": {"for": "1h"}}])
    run_start(process=queued, entity=order, trigger={"type": "manual"})  # waits: holds the slot
    refused = save("cancel-new", [approved], concurrency={"limit": 1, "onLimit": "cancel-new"},
                   steps=[{"id": "pause", "type": "wait", "config": {"for": "1h"}}])
    run_start(process=refused, entity=order, trigger={"type": "manual"})
    save("free-slot", [approved], concurrency={"limit": 2})
    save("trailing", [{**approved, "debounce": {"windowMs": 2000}}])
    leading = save("leading", [{**approved, "debounce": {"windowMs": 60000, "mode": "leading"}}])
    deduped = save("deduped", [{**approved, "dedupeKey": "entity.reference"}])
    later = timezone.now() + timedelta(hours=1)
    DebounceMark.objects.create(process=leading, key=str(order.pk), due_at=later,
                                trigger_id=ProcessTrigger.objects.get(process=leading).pk)
    DedupeMark.objects.create(scope=f"trigger:{ProcessTrigger.objects.get(process=deduped).pk}",
                              key=order.reference, expires_at=later)


@pytest.mark.django_db
def test_explain_says_what_flow_control_would_do_with_the_start(order_type):
    order = make_order(reference="ORD-F1", data=NO_EMAIL)
    flow_processes(order_type, order)

    processes = by_slug(explain(entity=order, changes={"customer": {"email": "a@example.com"}}))

    def note(slug):
        answer = processes[slug]
        assert answer["wouldStart"] is True  # a trigger starts it: flow control decides when
        [only] = answer["flowControl"]
        return answer["startsNow"], only

    starts_now, queued = note("one-at-a-time")
    assert starts_now is False
    assert (queued["code"], queued["onLimit"], queued["key"], queued["limit"],
            queued["holding"]) == ("concurrency", "queue", str(order.pk), 1, 1)
    assert queued["message"].startswith(f"Queued: limit 1 for key '{order.pk}' reached: "
                                        "1 run holds it.")
    starts_now, refused = note("cancel-new")
    assert starts_now is False and refused["message"].startswith("Cancelled at once")
    assert processes["free-slot"]["flowControl"] == [] and processes["free-slot"]["startsNow"]
    starts_now, trailing = note("trailing")
    assert starts_now is False and (trailing["code"], trailing["mode"]) == ("debounced",
                                                                            "trailing")
    starts_now, leading = note("leading")
    assert starts_now is False and "started within the window" in leading["message"]
    starts_now, deduped = note("deduped")
    assert starts_now is False and (deduped["code"], deduped["key"]) == ("deduplicated",
                                                                         "ORD-F1")
    assert Run.objects.count() == 2  # only the two holders: explain started nothing
