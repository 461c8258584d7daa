"""SQLite, a run started outside any transaction (an API trigger): its run and first step
are written in one transaction on the driver's own handle (entities.db.driver), and its
doorbell sent after the commit, to the queue's own file (docs/performance.md, "The API
trigger on SQLite: the least a trigger can cost"). The rows and the doorbell
must be what a start inside Django's transaction writes; nothing is kept of a start that
fails halfway."""

import sqlite3

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django_q.signing import SignedPackage

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store.doorbell import queue_shares
from entities.db import driver

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite" or "queue" not in settings.DATABASES,
                       reason="SQLite with the queue in its own file"),
]

SKIPPED = {"id", "run_id", "created_at", "updated_at"}


def _process():
    return process_save(slug="drv", name="drv", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}]})


def _values(row) -> dict:
    return {f.attname: getattr(row, f.attname) for f in type(row)._meta.concrete_fields
            if f.attname not in SKIPPED}


def _doorbells() -> list[tuple]:
    with sqlite3.connect(connections["queue"].settings_dict["NAME"]) as db:
        return [(key, SignedPackage.loads(payload)["args"]) for key, payload in
                db.execute("SELECT key, payload FROM django_q_ormq ORDER BY id")]


def test_a_start_outside_a_transaction_writes_what_one_inside_writes(queued_mode):
    process = _process()
    with transaction.atomic():  # Django's transaction: the general way
        assert not driver.owns_transactions("default")
        general, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    assert driver.owns_transactions("default") and not queue_shares("default")
    run, created = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    assert created and not connection.connection.in_transaction
    assert _values(Run.objects.get(pk=run.pk)) == _values(Run.objects.get(pk=general.pk))
    steps = [StepRun.objects.get(run=r) for r in (general, run)]
    assert _values(steps[1]) == _values(steps[0])
    assert not run._state.adding and run.pk == steps[1].run_id
    name = settings.Q_CLUSTER["name"]
    assert _doorbells() == [(name, (steps[0].pk,)), (name, (steps[1].pk,))]


def test_a_taken_idempotency_key_writes_nothing_and_rings_nothing(queued_mode):
    process = _process()
    first, created = run_start(process=process, trigger={"type": "manual"}, idempotency_key="k")
    again, created_again = run_start(process=process, trigger={"type": "manual"},
                                     idempotency_key="k")
    assert created and not created_again and again.pk == first.pk
    assert Run.objects.count() == 1 and StepRun.objects.count() == 1
    assert len(_doorbells()) == 1
    assert not connection.connection.in_transaction


def test_a_start_that_fails_halfway_keeps_nothing(queued_mode):
    process = _process()
    with connection.cursor() as cursor:  # the step's INSERT fails after the run's
        cursor.execute("CREATE TRIGGER drv_no_step BEFORE INSERT ON automation_steprun "
                       "BEGIN SELECT RAISE(ABORT, 'no step'); END")
    try:
        with pytest.raises(IntegrityError):  # Django's, as its cursor would raise it
            run_start(process=process, trigger={"type": "manual"})
        assert not connection.connection.in_transaction
        assert not Run.objects.exists() and not _doorbells()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER drv_no_step")
    run, created = run_start(process=process, trigger={"type": "manual"})  # usable again
    assert created and StepRun.objects.filter(run=run).count() == 1


def test_the_driver_transaction_only_where_django_has_none():
    with transaction.atomic():
        assert not driver.owns_transactions("default")
        with pytest.raises(RuntimeError), driver.transaction(using="default"):
            pass
