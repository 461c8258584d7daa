"""A step's claim and record on PostgreSQL are bound and prepared by the server
(entities.db.prepared.fetch_one_alone: psycopg's own prepared statements through its
public `prepare=True`). They must leave what the SQL-level way leaves, be seen by
Django's execute wrappers and errors as Django's own statements are, stop when
ENTITYFLOW_PREPARED_STATEMENTS is off, and give way when the server forgets them."""

import pytest
from django.db import DataError, connection, connections

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.db import prepared

pytestmark = [pytest.mark.requires_postgres, pytest.mark.django_db(transaction=True)]

THREE = [{"id": "a", "type": "function", "function": "noop", "next": "b"},
         {"id": "b", "type": "function", "function": "noop", "next": "c"},
         {"id": "c", "type": "function", "function": "noop"}]
FIELDS = ("step_id", "status", "attempt", "input", "output", "error", "state")


def history(run: Run) -> tuple:
    run.refresh_from_db()
    steps = [tuple(getattr(s, f) for f in FIELDS)
             for s in StepRun.objects.filter(run=run).order_by("id")]
    return run.status, run.result, run.finished_at is not None, steps


def a_run(process, n: int) -> tuple:
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": n})
    return history(run)


def prepared_here() -> list[tuple[str, bool]]:
    """(statement, whether by SQL PREPARE) of this connection's prepared statements."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, from_sql FROM pg_prepared_statements")
        return cursor.fetchall()


def bound(statements) -> list[str]:
    return [sql for sql, from_sql in statements if not from_sql]


def forget_prepared_statements() -> None:
    """What a pooler handing the session to another server connection does: the server no
    longer knows this connection's statements, and the driver is not told (a DEALLOCATE
    ALL psycopg sees would clear its own list)."""
    with connection.cursor() as cursor:
        cursor.execute("DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$")


@pytest.fixture
def three():
    return process_save(slug="three", name="Three", definition={"steps": THREE})


def test_claims_and_records_are_prepared_by_the_server_and_leave_the_same_history(
        settings, three):
    connection.close()  # a fresh connection: nothing prepared on it yet
    first = a_run(three, 1)
    statements = bound(prepared_here())
    assert any("recorded AS (" in sql for sql in statements)  # the record
    assert first[0] == Run.Status.COMPLETED and first[1] == {"n": 1}
    settings.ENTITYFLOW_PREPARED_STATEMENTS = False
    connection.close()
    assert a_run(three, 1) == first  # the client-bound way leaves the same


def test_preparing_off_prepares_nothing(settings, three):
    settings.ENTITYFLOW_PREPARED_STATEMENTS = False
    connection.close()
    assert a_run(three, 2)[0] == Run.Status.COMPLETED
    assert prepared_here() == []


def test_a_connection_whose_server_forgot_its_statements_runs_them_as_they_are(three):
    connection.close()
    first = a_run(three, 3)
    assert bound(prepared_here())
    forget_prepared_statements()
    assert a_run(three, 3) == first  # the statement that found its name gone ran again
    assert a_run(three, 3) == first
    assert prepared_here() == []  # and this connection prepares no more


def test_a_name_the_session_already_holds_is_given_way_to(three):
    """A pooler's session where another client prepared psycopg's first name already."""
    connection.close()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PREPARE _pg3_0 AS SELECT 1")
    assert a_run(three, 4)[0] == Run.Status.COMPLETED
    assert bound(prepared_here()) == []


def test_errors_are_djangos_and_execute_wrappers_see_the_statement(three):
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert prepared.fetch_one_alone("SELECT %s::int + 1", (1,)) == (2,)
        with pytest.raises(DataError):  # division by zero, as Django's cursor raises it
            prepared.fetch_one_alone("SELECT 1 / %s::int", (0,))
    assert seen == ["SELECT %s::int + 1", "SELECT 1 / %s::int"]
    assert prepared.fetch_one_alone("SELECT %s::text", ("still usable",)) == ("still usable",)


def test_the_kept_cursor_reads_each_statements_own_row_and_is_new_on_a_new_connection():
    """fetch_one_alone keeps one cursor per connection and thread: a statement that
    returns no row must not hand back the previous statement's, and a connection opened
    again (or another thread sharing this one) gets a cursor of its own."""
    import threading

    connection.close()
    assert prepared.fetch_one_alone("SELECT %s::int", (1,)) == (1,)
    kept = connection._entityflow_prepared.cursor
    assert prepared.fetch_one_alone("SELECT %s::int WHERE false", (2,)) is None
    assert prepared.fetch_one_alone("SELECT %s::int", (3,)) == (3,)
    assert connection._entityflow_prepared.cursor is kept

    other = {}
    shared = connections["default"]

    def in_a_thread():  # this thread's statements on the same connection (a live server's)
        connections["default"] = shared
        other["row"] = prepared.fetch_one_alone("SELECT %s::int", (4,))
        other["cursor"] = shared._entityflow_prepared.cursor

    connection.inc_thread_sharing()
    try:
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
    finally:
        connection.dec_thread_sharing()
    assert other["row"] == (4,) and other["cursor"] is not kept
    assert prepared.fetch_one_alone("SELECT %s::int", (6,)) == (6,)  # this thread's again

    connection.close()
    assert prepared.fetch_one_alone("SELECT %s::int", (5,)) == (5,)
    assert connection._entityflow_prepared.cursor is not kept
