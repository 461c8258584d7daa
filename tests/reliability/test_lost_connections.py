"""API requests and worker tasks whose PostgreSQL connection is terminated under them
(pg_terminate_backend, as an operator, a failover or the chaos harness does), after
Django's health check passed or while the connection was idle.

A request that lost its connection before committing anything runs again on a fresh one
and answers as usual, having written once; reads after a commit are repeated
(`POST /api/events` still answers 202 with its runs); what cannot be repeated answers
503 `unavailable` with Retry-After. A step's task runs once more on a fresh connection,
where the step's claim decides whether anything runs (entities.db.outage). Needs
PostgreSQL: SQLite connections are not lost.
"""

import logging
import time
import uuid

import pytest
from django.db import (
    DEFAULT_DB_ALIAS,
    OperationalError,
    close_old_connections,
    connection,
    connections,
)
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store import doorbell
from automation.tasks import step_execute
from entities.db import db_loss
from entities.models import Entity, EntityEvent
from tests.reliability import worker_functions
from tests.reliability.support import NOOP, assert_error

pytestmark = pytest.mark.django_db(transaction=True)
postgres = pytest.mark.requires_postgres

FIRST_READ_OF_CASES = 'SELECT "entities_entitytype"."id"'  # POST /api/cases: the case type
INSERT_CASE = 'INSERT INTO "entities_entity" ('  # inside the case's transaction
RUNS_OF_EVENT = 'FROM "automation_run" WHERE "automation_run"."event_id"'  # after the commit
CLAIM = "WITH claimed AS ("  # a step's claim, bound and prepared by the server (its own text)


class terminated_at:  # noqa: N801  (used as a context manager, like a function)
    """Within it, just before each statement containing `fragment` (`times` of them), the
    server process of the test's own connection is terminated from a second connection,
    and the statement then meets a connection that is gone. With `after`, just after the
    statement: what comes next meets it."""

    def __init__(self, fragment: str, times: int = 1, *, after: bool = False):
        self.fragment, self.left, self.after, self.terminated = fragment, times, after, 0
        self._installed = connection.execute_wrapper(self)

    def __enter__(self):
        self._installed.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._installed.__exit__(*exc_info)

    def __call__(self, execute, sql, params, many, context):
        if not (self.left and self.fragment in sql):
            return execute(sql, params, many, context)
        self.left -= 1
        pid = context["connection"].connection.info.backend_pid
        if self.after:
            result = execute(sql, params, many, context)
            terminate(pid)
            self.terminated += 1
            return result
        terminate(pid)
        self.terminated += 1
        return execute(sql, params, many, context)


def terminate(pid: int) -> None:
    """pg_terminate_backend(pid) from a second connection, and wait until it is gone."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0], f"backend {pid} was not terminated"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if not cursor.fetchone()[0]:
                    break
                time.sleep(0.02)
    finally:
        other.close()


@pytest.fixture
def pinged_process(db):
    return process_save(slug="on-ping", name="On ping", definition={
        "steps": NOOP, "triggers": [{"type": "event", "config": {"eventType": "lost.ping"}}]})


def cases_named(first_name: str):
    return Entity.objects.filter(entity_type__key="case", data__firstName=first_name)


@postgres
@pytest.mark.parametrize("fragment", [FIRST_READ_OF_CASES, INSERT_CASE],
                         ids=["before-any-write", "at-the-write-in-its-transaction"])
def test_a_request_terminated_before_it_committed_answers_as_usual_and_writes_once(
        api, case_type, caplog, fragment):
    caplog.set_level(logging.WARNING, logger="entities.db.db_loss")
    with terminated_at(fragment) as lost:
        response = api.post("/api/cases", {"firstName": "Ada"}, format="json")
    assert lost.terminated == 1
    assert response.status_code == 201, response.content[:500]
    assert response.json()["firstName"] == "Ada"
    case = cases_named("Ada").get()  # exactly one
    assert str(case.pk) == response.json()["id"]
    assert EntityEvent.objects.filter(entity=case).count() == 1
    assert any("running it again on a fresh connection" in r.getMessage()
               for r in caplog.records)


@postgres
def test_a_read_terminated_under_it_answers_as_usual(api, case_type):
    case_id = api.post("/api/cases", {"firstName": "Grace"}, format="json").json()["id"]
    with terminated_at('FROM "entities_entity"') as lost:
        response = api.get(f"/api/cases/{case_id}")
    assert lost.terminated == 1
    assert response.status_code == 200 and response.json()["id"] == case_id


@postgres
def test_an_event_terminated_after_its_commit_still_answers_202_with_its_runs(
        api, pinged_process, dispatched_events):
    with terminated_at(RUNS_OF_EVENT) as lost:
        response = api.post("/api/events", {"type": "lost.ping", "data": {"n": 1}}, format="json")
    assert lost.terminated == 1
    assert response.status_code == 202, response.content[:500]
    body = response.json()
    event = EntityEvent.objects.get(type="lost.ping")  # published exactly once
    assert body["id"] == event.pk
    runs = list(Run.objects.filter(event=event).values_list("pk", flat=True))
    assert len(runs) == 1 and body["executions"] == [str(runs[0])]
    assert [e.pk for e in dispatched_events] == [event.pk]


@postgres
def test_an_event_whose_reads_after_the_commit_lose_the_connection_twice_answers_503(
        api, pinged_process):
    with terminated_at(RUNS_OF_EVENT, times=2) as lost:
        response = api.post("/api/events", {"type": "lost.ping"}, format="json")
    assert lost.terminated == 2
    error = assert_error(response, 503, "unavailable")
    assert "may have been applied" in error["message"]
    assert int(response["Retry-After"]) > 0
    assert EntityEvent.objects.filter(type="lost.ping").count() == 1  # applied, once
    assert Run.objects.filter(process=pinged_process).count() == 1


@postgres
def test_a_request_that_loses_the_connection_twice_before_committing_answers_503(
        api, case_type):
    with terminated_at(FIRST_READ_OF_CASES, times=2) as lost:
        response = api.post("/api/cases", {"firstName": "Edsger"}, format="json")
    assert lost.terminated == 2
    error = assert_error(response, 503, "unavailable")
    assert "not applied" in error["message"]
    assert int(response["Retry-After"]) > 0
    assert not cases_named("Edsger").exists()
    # the next request gets a fresh connection and succeeds
    assert api.post("/api/cases", {"firstName": "Edsger"}, format="json").status_code == 201
    assert cases_named("Edsger").count() == 1


@postgres
def test_unknown_ids_still_answer_404_after_a_lost_connection(api, case_type):
    with terminated_at('FROM "entities_entity"'):
        response = api.get(f"/api/cases/{uuid.uuid4()}")
    assert_error(response, 404, "not_found")


@postgres
def test_a_commit_that_meets_a_lost_connection_answers_503_since_it_may_have_applied(
        api, case_type):
    # Terminated after the transaction's last statement: its COMMIT fails, and nobody can
    # tell whether the server received it. Running the view again could create two.
    with terminated_at("RELEASE SAVEPOINT", after=True) as lost:
        response = api.post("/api/cases", {"firstName": "Barbara"}, format="json")
    assert lost.terminated == 1
    error = assert_error(response, 503, "unavailable")
    assert "may have been applied" in error["message"]
    assert cases_named("Barbara").count() <= 1


def test_reads_repeated_after_a_lost_connection_must_be_reads(case_type):
    cases = Entity.objects.filter(entity_type__key="case")
    assert db_loss.read(cases.count) == 0
    with pytest.raises(TransactionManagementError, match="reads only"):
        db_loss.read(lambda: cases.update(version=2))


@pytest.mark.parametrize("sql, write", [
    ('SELECT "a" FROM "t"', False), ('(SELECT 1) UNION (SELECT 2)', False),
    ('SAVEPOINT "s1"', False), ('RELEASE SAVEPOINT "s1"', False),
    ('ROLLBACK TO SAVEPOINT "s1"', False), ("  select 1", False),
    ('INSERT INTO "t" VALUES (1)', True), ('UPDATE "t" SET a = 1', True),
    ('DELETE FROM "t"', True), ("WITH r AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1", True),
    ("CREATE TABLE t (a int)", True), ("", True),
    ('PREPARE entityflow_1 AS INSERT INTO "t" VALUES ($1)', False),
    ("EXECUTE entityflow_read_ab12(%s)", False), ("EXECUTE entityflow_ab12(%s)", True),
    ("EXECUTE", True),
])
def test_what_counts_as_a_write(sql, write):
    assert db_loss.is_write(sql) is write


@postgres
def test_a_trigger_terminated_at_its_prepared_lookup_runs_again_and_starts_one_run(api):
    """The trigger's lookups are prepared statements (entities.db.prepared): losing the
    connection at one (an EXECUTE of a read) is still a loss before anything was written,
    and the fresh connection prepares them again."""
    process_save(slug="lost-trigger", name="Lost trigger", definition={"steps": NOOP})
    with terminated_at("EXECUTE entityflow_read_") as lost:
        response = api.post("/api/workflow-definitions/lost-trigger/trigger",
                            {"input": {"n": 1}}, format="json")
    assert lost.terminated == 1
    assert response.status_code == 202, response.content[:500]
    run = Run.objects.get(process__slug="lost-trigger")
    assert str(run.pk) == str(response.json()["executionId"]) and run.input == {"n": 1}


# --- Worker tasks (entities.db.outage) ---------------------------------------------------

LOST_TASK = "running it again on a fresh connection"


@pytest.fixture
def pending_step(db, queued_mode):
    """A run's first step as a worker finds it: pending, its doorbell sent (no worker
    runs here; the test runs the task as the worker would). The step records each call
    with its idempotency key. The connection starts fresh, so each statement the task
    sends is prepared on it first (entities.db.prepared)."""
    worker_functions.CALLS.clear()
    process = process_save(slug="lost-worker", name="Lost worker", definition={
        "steps": [{"id": "only", "type": "function", "function": "reliability.count"}],
        "triggers": [{"type": "manual"}]})
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    connection.close()
    yield StepRun.objects.get(run=run)
    doorbell._broker().purge_queue()  # the doorbell no worker took: not the next test's


def worker_task(step: StepRun) -> None:
    """The doorbell's task as a django-q2 worker runs it: Django's per-task connection
    bookkeeping first (which arms CONN_HEALTH_CHECKS' check), then the task."""
    close_old_connections()
    step_execute(step.pk)


def lost_task_lines(caplog) -> int:
    return sum(LOST_TASK in record.getMessage() for record in caplog.records
               if record.name == "entities.db.outage")


@postgres
def test_a_step_whose_connection_died_while_idle_runs_on_a_fresh_one_with_no_health_check(
        pending_step, caplog):
    """As after a PostgreSQL restart while the worker waited for a doorbell: the task's
    first statement (the claim) meets the lost connection, not a SELECT 1 before it
    (docs/performance.md: a round trip on every step's way to its claim), and the task
    runs once more on a fresh connection: the step runs once, as its first attempt."""
    caplog.set_level(logging.WARNING, logger="entities.db.outage")
    with connection.cursor() as cursor:  # a connection the worker held, then idle
        cursor.execute("SELECT 1")
    terminate(connection.connection.info.backend_pid)
    worker_task(pending_step)
    pending_step.refresh_from_db()
    assert pending_step.status == StepRun.Status.COMPLETED and pending_step.attempt == 1
    assert len(worker_functions.CALLS) == 1
    assert lost_task_lines(caplog) == 1  # met by the claim: no health check went first


@postgres
def test_a_step_task_that_loses_its_connection_after_the_claim_runs_nothing_twice(
        pending_step, caplog):
    """Terminated right after the claim was applied: the task's second try finds the step
    claimed (its own lease still runs) and runs nothing. The step is a lost worker's, as
    if the process had been killed: once its lease runs out it runs again under the same
    idempotency key (docs/reliability.md)."""
    caplog.set_level(logging.WARNING, logger="entities.db.outage")
    with terminated_at(CLAIM, after=True) as lost:  # the claim, applied
        worker_task(pending_step)
    assert lost.terminated == 1 and lost_task_lines(caplog) == 1
    pending_step.refresh_from_db()
    assert pending_step.status == StepRun.Status.RUNNING and pending_step.attempt == 1
    assert len(worker_functions.CALLS) <= 1  # the record (or the lease's flush) was lost

    StepRun.objects.filter(pk=pending_step.pk).update(lease_expires_at=timezone.now())
    worker_task(pending_step)  # the sweeper's doorbell, once the lease has run out
    pending_step.refresh_from_db()
    assert pending_step.status == StepRun.Status.COMPLETED and pending_step.attempt == 2
    keys = {key for _, _, key in worker_functions.CALLS}
    assert keys == {f"{pending_step.run_id}:only:{pending_step.scope}:1"}


@postgres
def test_a_step_task_that_loses_its_connection_twice_fails_and_leaves_the_step_pending(
        pending_step):
    """A second loss in one task is raised (the doorbell's task fails, as any other
    error): nothing was claimed, so the next doorbell (the sweeper's) runs it once."""
    with terminated_at(CLAIM, times=2) as lost:  # each try's claim
        with pytest.raises(OperationalError):
            worker_task(pending_step)
    assert lost.terminated == 2
    close_old_connections()  # the worker's next task: Django replaces the broken connection
    pending_step.refresh_from_db()
    assert pending_step.status == StepRun.Status.PENDING and not worker_functions.CALLS
    worker_task(pending_step)
    pending_step.refresh_from_db()
    assert pending_step.status == StepRun.Status.COMPLETED and pending_step.attempt == 1
    assert len(worker_functions.CALLS) == 1
