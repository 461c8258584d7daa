"""CompiledInsert (entities.db.compiled): an INSERT compiled once prepares every later
row's values as Django's own compiler does, and the run store's start writes with it
exactly the rows save() wrote, on every database."""

import uuid

import pytest
import time_machine
from django.db import connection
from django.db.models.sql import InsertQuery
from django.test.utils import CaptureQueriesContext

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.store import get_store
from automation.store.graphs import graph_for
from entities.db.compiled import CompiledInsert

pytestmark = pytest.mark.django_db(transaction=True)


def django_statement(row, fields) -> tuple[str, list]:
    """The INSERT Django's own compiler sends for `row` (what save() sends)."""
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    [(sql, params)] = query.get_compiler(using="default").as_sql()
    return sql, list(params)


def rendered(sql: str, params) -> object:
    """The statement with its values in it, as the database receives it."""
    if connection.vendor == "postgresql":
        return connection.ops.compose_sql(sql, list(params))
    return sql, list(params)


def rows(process, n: int) -> tuple[Run, StepRun]:
    run = Run(process=process, version_id=process.current_version_id,
              trigger={"type": "manual", "n": n}, input={"n": n, "list": [1, None, "x"]},
              priority="high" if n % 2 else "normal",
              idempotency_key=f"key-{uuid.uuid4()}" if n % 2 else None)
    step = StepRun(run=run, step_id="a", step_type="function", input=run.input if n else None,
                   priority=run.priority)
    return run, step


def test_later_rows_are_prepared_as_djangos_compiler_prepares_them():
    process = process_save(slug="compiled-insert", name="C", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    inserts = {Run: CompiledInsert(Run), StepRun: CompiledInsert(StepRun)}
    for n in range(4):  # the first compiled by Django, the later ones prepared here
        for row in rows(process, n):
            with time_machine.travel(f"2026-12-0{n + 1} 12:00:00+00:00", tick=False):
                ours = inserts[type(row)].sql_params(row, "default")  # auto_now: now
                djangos = django_statement(row, inserts[type(row)].fields)
                assert rendered(*ours) == rendered(*djangos), (n, type(row))


def test_the_start_writes_the_rows_save_writes(queued_mode):
    process = process_save(slug="compiled-start", name="C", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    first = graph_for(process.current_version_id).steps["a"]
    started, saved = rows(process, 1), rows(process, 1)
    started[0].idempotency_key, saved[0].idempotency_key = "started", "saved"
    with CaptureQueriesContext(connection) as queries:
        assert get_store().start(*started, first)
    writes = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2)  # + the queue's row
    for row in saved:
        row.save(force_insert=True)
    for model, (new, old) in ((Run, (started[0], saved[0])), (StepRun, (started[1], saved[1]))):
        assert not new._state.adding and new.pk is not None
        stored_new = model.objects.filter(pk=new.pk).values().get()
        stored_old = model.objects.filter(pk=old.pk).values().get()
        for key in ("id", "run_id", "created_at", "idempotency_key"):
            stored_new.pop(key, None), stored_old.pop(key, None)
        assert stored_new == stored_old


def test_a_start_whose_key_is_taken_writes_nothing(queued_mode):
    process = process_save(slug="compiled-taken", name="C", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    first = graph_for(process.current_version_id).steps["a"]
    one, two = rows(process, 1), rows(process, 1)
    two[0].idempotency_key = one[0].idempotency_key
    assert get_store().start(*one, first)
    assert not get_store().start(*two, first)
    assert Run.objects.filter(idempotency_key=one[0].idempotency_key).count() == 1
    assert StepRun.objects.filter(run__process=process).count() == 1
