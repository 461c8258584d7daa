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
                        expected = rendered(django(value, connection))
                    except (TypeError, ValueError, AttributeError, ValidationError):
                        continue  # not a value this field takes
                    assert rendered(ours(value, connection)) == expected, (field.name, value)


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
