import json
from io import StringIO

import pytest
from django.core.management import call_command

from automation.models import ProcessTrigger, Run
from automation.triggers.manual import manual_start
from entities.outbox import event_publish

pytestmark = pytest.mark.django_db

PURCHASE = {"type": "event", "config": {"eventType": "purchase.created"},
            "condition": "event.data.total > 0"}


def test_an_event_trigger_condition_gates_the_run_and_counts_skips(save_process, committed):
    process = save_process("purchases", [PURCHASE])
    with committed():
        event_publish(type="purchase.created", data={"total": 0}, source="shop")
    assert not Run.objects.filter(process=process).exists()
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1

    with committed():
        event_publish(type="purchase.created", data={"total": 12}, source="shop")
    run = Run.objects.get(process=process)
    assert run.input == {"total": 12}
    assert run.status == Run.Status.COMPLETED
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1


def test_run_process_starts_a_process_with_a_manual_trigger(save_process, committed):
    process = save_process("by-hand", [{"type": "manual"}])
    out = StringIO()
    with committed():
        call_command("run_process", "by-hand", "--input", '{"who": "ops"}', stdout=out)
    answer = json.loads(out.getvalue())
    run = Run.objects.get(process=process)
    assert answer["executionId"] == str(run.pk)
    assert run.trigger["type"] == "manual"
    assert run.input == {"who": "ops"}
    assert run.status == Run.Status.COMPLETED


def test_manual_start_checks_the_manual_trigger_condition(save_process, committed):
    process = save_process("guarded", [{"type": "manual", "condition": "input.confirm == true"}])
    assert manual_start(process=process, input={"confirm": False}) is None
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1
    with committed():
        run = manual_start(process=process, input={"confirm": True}, source="admin")
    run.refresh_from_db()
    assert (run.status, run.trigger["source"]) == (Run.Status.COMPLETED, "admin")


def test_the_dispatch_reads_the_breaker_before_it_claims_the_event(save_process, committed):
    """What the dispatch only reads (matching, the circuit breaker) happens before its
    transaction, which on SQLite holds the one write lock every worker's claim waits on:
    the breaker's reads come before the event's claim, the run's INSERT after it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    process = save_process("purchases", [PURCHASE])
    with CaptureQueriesContext(connection) as queries, committed():
        event_publish(type="purchase.created", data={"total": 5}, source="shop")
    sql = [q["sql"] for q in queries.captured_queries]

    def first(*words: str) -> int:
        return next(i for i, s in enumerate(sql) if all(w in s for w in words))

    claim = first("UPDATE", "entities_entityevent", "dispatched_at")
    assert first("automation_processbreaker") < claim < first("INSERT", "automation_run")
    assert Run.objects.get(process=process).input == {"total": 5}
