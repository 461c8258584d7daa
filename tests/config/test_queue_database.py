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
