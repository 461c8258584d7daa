"""CompiledUpdate (entities.db.compiled): an UPDATE compiled once per shape writes what
Django's own `filter(...).update(...)` writes, on every database."""

import uuid

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.db.compiled import CompiledStatement, CompiledUpdate, update_sql

pytestmark = pytest.mark.django_db(transaction=True)


def a_step() -> StepRun:
    process = process_save(slug="compiled", name="C", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    return StepRun.objects.get(run=run)


@pytest.mark.parametrize("output", [{"nested": [1, "two", None]}, None, "text", []])
def test_it_writes_what_django_writes_again_and_again(output, queued_mode):
    step = a_step()
    claim = uuid.uuid4()
    StepRun.objects.filter(pk=step.pk).update(status=StepRun.Status.RUNNING, claim=claim)
    compiled = CompiledUpdate(StepRun)
    for attempt in range(2):  # compiled by Django, then reused
        values = {"status": StepRun.Status.COMPLETED, "output": output, "error": None,
                  "finished_at": timezone.now(), "duration_ms": attempt}
        filters = {"pk": step.pk, "claim": claim, "status": StepRun.Status.COMPLETED
                   if attempt else StepRun.Status.RUNNING}
        sql, params = compiled.sql_params(filters, values, "default")
        expected = update_sql(StepRun.objects.filter(**filters), values, "default")
        assert sql == expected[0]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            assert cursor.rowcount == 1
        row = StepRun.objects.get(pk=step.pk)
        assert (row.status, row.output, row.error, row.duration_ms) == (
            StepRun.Status.COMPLETED, output, None, attempt)


def test_an_expression_is_left_to_django(queued_mode):
    step = a_step()
    with pytest.raises(ValueError, match="expression"):
        CompiledUpdate(Run).sql_params({"pk": step.run_id}, {"priority": F("priority") + 1},
                                       "default")


def test_a_compiled_statement_whose_parameters_are_not_djangos_raises_at_once(queued_mode):
    """CompiledStatement checks its parameters against Django's on the first call of each
    database: in another order they would write a wrong column."""
    step = a_step()

    def build(using, pk, duration):
        return update_sql(StepRun.objects.filter(pk=pk), {"duration_ms": duration}, using)

    swapped = CompiledStatement(build, lambda connection, pk, duration: [pk, duration])
    with pytest.raises(RuntimeError, match="not Django's"):
        swapped.sql_params("default", step.pk, 7)
    right = CompiledStatement(build, lambda connection, pk, duration: [duration, pk])
    for duration in (7, 8):  # compiled by Django, then reused
        sql, params = right.sql_params("default", step.pk, duration)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        assert StepRun.objects.get(pk=step.pk).duration_ms == duration
