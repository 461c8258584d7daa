"""Preparation (entities.db.compiled): a value prepared for the database is what Django's
own field methods give, on every database, whether it was passed as it is or not."""

import datetime
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.utils import timezone

from automation.models import Run, StepRun
from entities.db.compiled import Preparation, _rendered

pytestmark = pytest.mark.django_db

AWARE = timezone.now()
NAIVE = datetime.datetime(2026, 12, 5, 10, 0)  # noqa: DTZ001 - a naive one on purpose
VALUES = ["text", "", 7, 0, True, uuid.uuid4(), AWARE, StepRun.Status.RUNNING,
          {"a": [1, None]}, [1, "two"], None]


def rendered(value) -> str:
    return _rendered(connection, "%s", [value])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a naive datetime, made aware
@pytest.mark.parametrize("model", [Run, StepRun])
def test_every_field_prepares_what_django_prepares(model):
    for field in model._meta.concrete_fields:
        preparation = Preparation(field)
        for value in [*VALUES, NAIVE]:
            for _ in range(2):  # the first of its kind learns, the second may skip
                for ours, django in ((preparation.save, field.get_db_prep_save),
                                     (preparation.lookup, field.get_db_prep_value)):
                    try:
                        expected = django(value, connection)
                        expected_text = rendered(expected)
                    except (TypeError, ValueError, AttributeError, ValidationError):
                        continue  # not a value this field takes
                    got = ours(value, connection)
                    # the same value of the same class (psycopg binds an Int4 as int4)
                    assert rendered(got) == expected_text, (field.name, value)
                    assert type(got) is type(expected), (field.name, value)


class Lowered(models.CharField):
    def get_prep_value(self, value):
        return super().get_prep_value(value).lower()


def test_a_field_class_of_its_own_always_takes_djangos_way():
    field = Lowered(max_length=10)
    preparation = Preparation(field)
    assert preparation.save("abc", connection) == "abc"
    assert preparation.save("ABC", connection) == "abc"  # not passed as it is


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_naive_datetime_is_made_aware_after_an_aware_one():
    field = StepRun._meta.get_field("finished_at")
    preparation = Preparation(field)
    assert preparation.save(AWARE, connection) is AWARE or connection.vendor != "postgresql"
    assert rendered(preparation.save(NAIVE, connection)) == rendered(
        field.get_db_prep_save(NAIVE, connection))


@pytest.mark.parametrize(("model", "name", "values", "method"), [
    (StepRun, "scope", ["", ""], "save"),  # the empty string: its own answer
    (StepRun, "error", [None, None], "save"),  # a JSONField's None is SQL NULL
    (StepRun, "duration_ms", [None, None], "save"),
    (StepRun, "attempt", [7, 70000], "save"),  # PostgreSQL: wrapped in psycopg's Int4
    (StepRun, "id", [5, 70000], "lookup"),
])
def test_a_value_whose_answer_was_learnt_skips_djangos_calls(model, name, values, method):
    """The first value of its kind takes Django's way and is learnt from; the next is
    prepared without it (a step writes these on every record, docs/performance.md),
    and is still exactly what Django gives."""
    field = model._meta.get_field(name)
    django_method = getattr(field, "get_db_prep_save" if method == "save" else
                            "get_db_prep_value")
    calls = []

    def counted(value, connection, **kwargs):
        calls.append(value)
        return django_method(value, connection, **kwargs)

    field_copy = type(field).__new__(type(field))  # the same class: still a plain field
    field_copy.__dict__.update(field.__dict__)
    setattr(field_copy, django_method.__name__, counted)
    preparation = Preparation(field_copy)
    ours = getattr(preparation, method)
    for value in values:
        got, expected = ours(value, connection), django_method(value, connection)
        assert (rendered(got), type(got)) == (rendered(expected), type(expected))
    assert calls == values[:1]
