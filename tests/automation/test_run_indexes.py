"""The indexes every run's and step run's INSERT writes (migration 0021,
docs/performance.md "The API trigger: before and after"): no index is a copy of another's
leading column, a reference most runs leave empty is indexed only where it is set, and
every lookup by a reference still finds its rows through an index, on both databases."""

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from automation.models import Run, StepRun

pytestmark = pytest.mark.django_db

# The references an API trigger's run (and most others) leaves empty.
MOSTLY_EMPTY = {Run: ("event_id", "entity_id", "batch_id", "rerun_of_id", "parent_run_id",
                      "parent_step_run_id", "created_by_id"),
                StepRun: ("parent_id",)}


def indexes(model) -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {name: about for name, about in found.items()
            if about["index"] or about["unique"] or about["primary_key"]}


def partial(model, name: str) -> bool:
    """Whether the index `name` has a WHERE clause (SQLite and PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s",
                           [name])
        else:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        row = cursor.fetchone()
    return row is not None and row[0] is not None and " WHERE " in row[0].upper()


@pytest.mark.parametrize("model", [Run, StepRun])
def test_a_reference_most_rows_leave_empty_is_indexed_only_where_set(model):
    for name, about in indexes(model).items():
        if about["columns"] and about["columns"][0] in MOSTLY_EMPTY[model]:
            assert partial(model, name), f"{name} indexes every row's empty {about['columns'][0]}"


@pytest.mark.parametrize("model", [Run, StepRun])
def test_no_plain_index_repeats_the_leading_column_of_another(model):
    found = indexes(model)
    plain = {name: about["columns"] for name, about in found.items()
             if len(about["columns"]) == 1 and not about["unique"]
             and not about["primary_key"] and not partial(model, name)}
    for name, (column,) in plain.items():
        longer = [other for other, about in found.items()
                  if other != name and len(about["columns"]) > 1
                  and about["columns"][0] == column and not partial(model, other)]
        assert not longer, f"{name} on {column} repeats the lead of {longer}"


def plan(queryset) -> str:
    """How the database would read `queryset` with table scans ruled out where it can
    (PostgreSQL plans a scan for a tiny table anyway)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
        try:
            return queryset.explain()
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("RESET enable_seqscan")


LOOKUPS = {
    "a batch's runs": lambda: Run.objects.filter(batch_id=uuid.uuid4()),
    "an event's runs": lambda: Run.objects.filter(event_id=1),
    "an entity's runs of the last minute": lambda: Run.objects.filter(
        entity_id=1, created_at__gte=timezone.now()),
    "a run's re-runs": lambda: Run.objects.filter(rerun_of_id=uuid.uuid4()),
    "active sub-process runs": lambda: Run.objects.filter(
        parent_step_run__isnull=False, status__in=[Run.Status.RUNNING]),
    "a run's sub-process runs": lambda: Run.objects.filter(parent_run_id__in=[uuid.uuid4()]),
    "a user's runs": lambda: Run.objects.filter(created_by_id=1),
    "a process's runs": lambda: Run.objects.filter(process_id=1),
    "a run's step runs": lambda: StepRun.objects.filter(run_id=uuid.uuid4()),
    "a step run's tool calls": lambda: StepRun.objects.filter(parent_id=1),
    "step runs of a status": lambda: StepRun.objects.filter(status=StepRun.Status.RUNNING),
    "steps of runs (pruning)": lambda: StepRun.objects.filter(run_id__in=[uuid.uuid4(),
                                                                          uuid.uuid4()]),
    "re-runs of runs (pruning)": lambda: Run.objects.filter(rerun_of_id__in=[uuid.uuid4()]),
    "a run by its idempotency key": lambda: Run.objects.filter(idempotency_key="batch:x:y"),
    "live runs (metrics)": lambda: Run.objects.filter(status__in=(Run.Status.PENDING,
                                                                 Run.Status.RUNNING)),
}


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_every_lookup_by_a_reference_uses_an_index(lookup):
    shown = plan(LOOKUPS[lookup]().order_by())
    if connection.vendor == "sqlite":
        assert "USING INDEX" in shown or "USING COVERING INDEX" in shown, shown
    else:
        assert "Index" in shown and "Seq Scan" not in shown, shown


@pytest.mark.parametrize("model", [Run, StepRun])
def test_no_pattern_index_on_a_run_table(model):
    """PostgreSQL gives an indexed or unique text field a second, LIKE-only index;
    nothing searches runs or step runs by a prefix of a status or a key (migration 0021
    drops them)."""
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL makes pattern indexes")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s "
                       "AND indexdef LIKE %s", [model._meta.db_table, "%pattern_ops%"])
        assert cursor.fetchall() == []
