"""SQLite: the task queue lives in a file of its own (config/queue.py), and a step still
runs end to end through it with a real worker (docs/operating.md, "The task queue's
database")."""

import sqlite3
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connections, router

from automation.models import Run, StepRun
from automation.services.processes import process_save
from entities.services import entity_create
from tests.worker import Worker, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
                       reason="SQLite only: on PostgreSQL the queue shares the database"),
]


def _tables(path: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_the_queue_has_a_file_of_its_own_and_a_step_runs_through_it(order_type, effects,
                                                                     queued_mode, tmp_path):
    from django_q.models import OrmQ, Schedule

    import tests.automation.worker_functions  # noqa: F401  (registers the functions here too)

    main, queue = connections["default"].settings_dict["NAME"], connections["queue"].settings_dict["NAME"]
    assert main != queue and settings.Q_CLUSTER["orm"] == "queue"
    assert router.db_for_write(OrmQ) == "queue" and router.db_for_write(StepRun) == "default"
    assert {"django_q_ormq", "django_q_task", "django_q_schedule"} <= _tables(queue)
    assert not {t for t in _tables(main) if t.startswith("django_q")}
    assert "automation_steprun" not in _tables(queue)
    # the migration that writes the sweeper's schedule writes it where the worker's
    # scheduler reads it (run here: a transactional test before this one may have emptied
    # the tables the migrations filled)
    Schedule.objects.filter(name="entityflow-sweeper").delete()
    import_module("automation.migrations.0012_batchperf_queue_schedules").ensure_schedules(
        django_apps, None)
    with sqlite3.connect(queue) as db:
        assert db.execute("SELECT count(*) FROM django_q_schedule WHERE name = ?",
                          ("entityflow-sweeper",)).fetchone() == (1,)

    process_save(slug="via-queue", name="Via the queue", entity_type=order_type, definition={
        "steps": [{"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
                  {"id": "b", "type": "function", "function": "worker.effect"}],
        "triggers": [{"type": "status", "config": {"entityType": "order", "status": "received"}}]})
    order = entity_create(entity_type=order_type, reference="Q-1",
                          data={"customer": {"name": "Ada"}, "total": 10})
    # the doorbell is a row in the queue's file, written after the step's commit
    step = StepRun.objects.get(run__entity=order)
    assert OrmQ.objects.filter(key=settings.Q_CLUSTER["name"]).count() == 1
    worker = Worker(tmp_path / "worker.log")
    try:
        run = wait_for(lambda: Run.objects.filter(entity=order, status=Run.Status.COMPLETED).first(),
                       60, message="the run to complete")
        # taken and acknowledged: the worker deletes the row once the task has returned,
        # a moment after the run's end committed, so it is waited for before the stop
        wait_for(lambda: not OrmQ.objects.filter(key=settings.Q_CLUSTER["name"]).exists(), 30,
                 message="the doorbell's row to be acknowledged")
    finally:
        worker.stop()
    assert sorted(effects.read_text().split()) == [f"{run.pk}:a", f"{run.pk}:b"]
    assert StepRun.objects.get(pk=step.pk).status == StepRun.Status.COMPLETED


def _rows(path: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, payload, lock FROM django_q_ormq ORDER BY id").fetchall()


def test_a_doorbell_after_a_commit_is_the_row_the_orm_writes_and_a_worker_takes(queued_mode):
    """The doorbell's own INSERT on the queue file (config/queue_broker.py) writes what the
    ORM's INSERT writes: the same key per priority, the package, and `lock` in Django's
    text form, so the dequeue's `lock < now` takes it and nothing else does."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from automation.models import Priority
    from automation.store.doorbell import TASK, queue_broker, ring

    broker, path = queue_broker(), connections["queue"].settings_dict["NAME"]
    assert type(broker).__name__ == "QueueBroker"
    assert ring(41) and ring(42, priority=Priority.HIGH)
    fast = _rows(path)
    assert [key for key, _, _ in fast] == [settings.Q_CLUSTER["name"],
                                           f"{settings.Q_CLUSTER['name']}:high"]
    assert [SignedPackage.loads(payload)["args"] for _, payload, _ in fast] == [(41,), (42,)]
    assert all(SignedPackage.loads(payload)["func"] == TASK for _, payload, _ in fast)
    # the same rows through the ORM (the broker's general path), read back the same way
    OrmQ.objects.using("queue").create(key=settings.Q_CLUSTER["name"], payload="orm",
                                       lock=OrmQ.objects.using("queue").get(key=fast[0][0]).lock)
    orm_lock = _rows(path)[-1][2]
    assert orm_lock == fast[0][2] and len(orm_lock) == len(fast[1][2])
    OrmQ.objects.using("queue").filter(payload="orm").delete()
    # a worker's dequeue takes the high one first, then the normal one, and locks each
    taken = [SignedPackage.loads(payload)["args"] for _, payload in broker.dequeue()]
    taken += [SignedPackage.loads(payload)["args"] for _, payload in broker.dequeue()]
    assert taken == [(42,), (41,)]
    assert not broker.dequeue() and broker.queue_size() == 0 and broker.lock_size() == 2


def test_a_doorbell_sent_inside_a_queue_transaction_is_rolled_back_with_it(queued_mode):
    """Inside a transaction on the queue's connection the row goes the ORM's way, so it
    belongs to that transaction (and Django's checks of it apply)."""
    from django.db import transaction

    from automation.store.doorbell import queue_broker, send_step

    path = connections["queue"].settings_dict["NAME"]
    with pytest.raises(RuntimeError), transaction.atomic(using="queue"):
        send_step(43)
        assert queue_broker().queue_size() == 1  # written, in this transaction
        raise RuntimeError("roll back")
    assert _rows(path) == []
    send_step(44)  # after it, on the connection in autocommit again: committed at once
    assert len(_rows(path)) == 1


def test_a_chunks_doorbells_are_one_statement_not_a_commit_each(queued_mode):
    """Several doorbells at once (a batch chunk's) keep the multi-row INSERT: one
    statement, so one commit, per 500 rows, not one commit per row."""
    from django.test.utils import CaptureQueriesContext

    from automation.store.doorbell import ring_many

    with CaptureQueriesContext(connections["queue"]) as queries:
        ring_many([51, 52, 53])
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert len(_rows(connections["queue"].settings_dict["NAME"])) == 3


def test_the_priority_question_answers_as_the_orms_exists_with_its_own_statement(queued_mode):
    """A chunk doorbell asks before each step whether a doorbell of higher priority waits
    (engine.chunks); on SQLite the queue broker asks it with its own prepared SELECT
    (config/queue_broker.py, sent by entities.db.driver), not the ORM's queryset. It
    answers as the ORM's `exists()` on the same rows: a due doorbell of a higher priority
    counts, one of the same or a lower priority does not, nor one not due yet (a delayed
    doorbell's `lock` is its time)."""
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_q.models import OrmQ

    from automation.models import Priority
    from automation.store.doorbell import higher_waiting, queue_broker, ring
    from automation.store.queues import PriorityORM, queue_key, taken_key

    broker, name = queue_broker(), settings.Q_CLUSTER["name"]
    queue = OrmQ.objects.using("queue")

    own = f'SELECT 1 FROM "{OrmQ._meta.db_table}" WHERE "key" = '

    def both(priority: str) -> tuple[bool, bool]:
        # a test capturing statements sees the driver's (entities.db.driver): one, the
        # broker's own text (the ORM's `exists()` reads `SELECT 1 AS "a" …`)
        with CaptureQueriesContext(connections["queue"]) as queries:
            answer = higher_waiting(priority)
        assert [q["sql"][:len(own)] for q in queries.captured_queries] == [own]
        return answer, PriorityORM.waiting_before(broker, priority)

    assert both(Priority.LOW) == (False, False) and both(Priority.NORMAL) == (False, False)
    assert ring(61, priority=Priority.LOW)
    assert both(Priority.LOW) == (False, False)  # the same priority is not higher
    assert ring(62)
    assert both(Priority.LOW) == (True, True) and both(Priority.NORMAL) == (False, False)
    queue.filter(key=name).delete()
    later = timezone.now() + timedelta(minutes=5)
    queue.create(key=queue_key(name, Priority.HIGH), payload="later", lock=later)
    assert both(Priority.NORMAL) == (False, False) and both(Priority.LOW) == (False, False)
    queue.filter(payload="later").update(lock=timezone.now() - timedelta(seconds=1))
    assert both(Priority.NORMAL) == (True, True) and both(Priority.LOW) == (True, True)
    assert higher_waiting(Priority.HIGH) is False  # nothing is higher
    # a doorbell taken by a pusher and not begun: its marker (store.queues), counted
    # while it lives, not once its expiry has passed
    queue.filter(payload="later").delete()
    taken = queue.create(key=taken_key(name, Priority.NORMAL), payload="7",
                         lock=timezone.now() + timedelta(seconds=5))
    assert both(Priority.LOW) == (True, True) and both(Priority.NORMAL) == (False, False)
    queue.filter(pk=taken.pk).update(lock=timezone.now() - timedelta(seconds=1))
    assert both(Priority.LOW) == (False, False)
    queue.filter(pk=taken.pk).update(key=taken_key(name, Priority.HIGH),
                                     lock=timezone.now() + timedelta(seconds=5))
    assert both(Priority.NORMAL) == (True, True) and both(Priority.LOW) == (True, True)
