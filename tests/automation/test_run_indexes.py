"""The indexes of the run and step-run tables (docs/performance.md, "Indexes a run
writes"): every run's start writes each of them, and every change of a run's or a step's
status writes each again (the status is indexed, so the update is never in place), so
none may be one that another index already serves, and a column set for a few rows only
is indexed where it is set. The queries that read through the indexes dropped for that
still find an index. Both databases (SQLite: PRAGMA index_list / index_info;
PostgreSQL: pg_index)."""

import uuid

import pytest
from django.db import connection, transaction

from automation.models import Run, StepRun

pytestmark = pytest.mark.django_db

TABLES = (Run._meta.db_table, StepRun._meta.db_table)


def table_indexes(table: str) -> list[dict]:
    """Each index of `table`: its name, columns in order, whether it is unique or partial,
    and (PostgreSQL) whether it is a pattern-ops index for LIKE."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA index_list({connection.ops.quote_name(table)})")
            listed = cursor.fetchall()  # seq, name, unique, origin, partial
            found = []
            for _, name, unique, _, partial in listed:
                cursor.execute(f"PRAGMA index_info({connection.ops.quote_name(name)})")
                columns = tuple(row[2] for row in sorted(cursor.fetchall()))
                found.append({"name": name, "columns": columns, "unique": bool(unique),
                              "partial": bool(partial), "pattern": False})
            return found
        cursor.execute(
            "SELECT c.relname, i.indisunique, i.indpred IS NOT NULL, pg_get_indexdef(i.indexrelid),"
            " ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            "       ORDER BY k.n)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = %s::regclass", [table])
        return [{"name": name, "columns": tuple(columns), "unique": unique, "partial": partial,
                 "pattern": "pattern_ops" in definition}
                for name, unique, partial, definition, columns in cursor.fetchall()]


@pytest.mark.parametrize("table", TABLES)
def test_no_index_of_a_run_table_is_served_by_another(table):
    """An index whose columns lead another's is never needed for lookups (the longer one
    serves them) but is written by every start and every status change. A unique one
    stays: it is a rule, not a lookup."""
    indexes = table_indexes(table)
    full = [index for index in indexes if not index["partial"]]
    redundant = [(index["name"], other["name"]) for index in full if not index["unique"]
                 for other in full if other is not index
                 and other["columns"][:len(index["columns"])] == index["columns"]]
    assert redundant == []


@pytest.mark.parametrize("table", TABLES)
def test_no_pattern_index_on_a_run_table(table):
    """PostgreSQL gives an indexed or unique text field a second, LIKE-only index;
    nothing searches runs or step runs by a prefix of a status or a key."""
    assert [index["name"] for index in table_indexes(table) if index["pattern"]] == []


# Columns set for few runs (or step runs): a run that leaves them empty writes nothing to
# their indexes.
MOSTLY_EMPTY = {Run._meta.db_table: ("event_id", "batch_id", "rerun_of_id", "parent_run_id",
                                     "parent_step_run_id", "created_by_id"),
                StepRun._meta.db_table: ("parent_id",)}


@pytest.mark.parametrize("table", TABLES)
def test_a_mostly_empty_column_is_indexed_only_where_it_is_set(table):
    indexed = {index["columns"][0]: index for index in table_indexes(table)}
    assert {column: indexed[column]["partial"] for column in MOSTLY_EMPTY[table]} == {
        column: True for column in MOSTLY_EMPTY[table]}


def plan(queryset_or_sql, params=()) -> str:
    """The plan of a query, with PostgreSQL told not to prefer a sequential scan of the
    tiny test tables (a planner setting of this transaction only)."""
    sql, params = (queryset_or_sql, params) if isinstance(queryset_or_sql, str) else \
        queryset_or_sql.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(row) for row in cursor.fetchall())


def lookups() -> dict:
    """The reads of the run tables through a column whose own index was dropped or made
    partial: the store's, pruning's (`IN` lists) and the ORM's on a delete."""
    some, ids = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    return {
        "steps of a run": StepRun.objects.filter(run_id=some),
        "steps of runs (pruning)": StepRun.objects.filter(run_id__in=ids),
        "pending steps (sweeper)": StepRun.objects.filter(status=StepRun.Status.PENDING),
        "tool calls of a step": StepRun.objects.filter(parent_id=7),
        "runs of a process": Run.objects.filter(process_id=7),
        "runs of an entity": Run.objects.filter(entity_id=some),
        "runs of an event": Run.objects.filter(event_id=7),
        "runs of a batch": Run.objects.filter(batch_id=some),
        "re-runs of runs (pruning)": Run.objects.filter(rerun_of_id__in=ids),
        "sub-runs of runs (pruning)": Run.objects.filter(parent_run_id__in=ids),
        "sub-runs of a step": Run.objects.filter(parent_step_run_id=7),
        "runs a user started": Run.objects.filter(created_by_id=7),
        "run by its key": Run.objects.filter(idempotency_key="batch:x:y"),
        "live runs (metrics)": Run.objects.filter(status__in=(Run.Status.PENDING,
                                                              Run.Status.RUNNING)),
    }


@pytest.mark.parametrize("name", list(lookups()))
def test_each_lookup_of_a_run_table_still_reads_through_an_index(name):
    text = plan(lookups()[name].order_by())
    if connection.vendor == "postgresql":
        assert "Index" in text and "Seq Scan" not in text, text
    else:
        assert "USING" in text and "INDEX" in text and "SCAN" not in text.replace(
            "SCAN CONSTANT", ""), text
