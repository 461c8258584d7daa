"""Test data, built in one place. Writes go through the services like real callers."""

import itertools
from importlib import import_module

from entities.demo import demo_order_data, order_reference, order_type_ensure
from entities.models import Entity, EntityType, Requirement, Status, Transition
from entities.services import entity_create

_numbers = itertools.count(1)


def make_entity_type(
    *, statuses=("new", "done"), transitions=(("new", "done"),), requirements=(), **overrides
) -> EntityType:
    """A small type: the first status is initial. `requirements` are
    (status_key, name, expression, message) tuples."""
    number = next(_numbers)
    fields = {"key": f"type-{number}", "name": f"Type {number}", "schema": {}, **overrides}
    entity_type = EntityType.objects.create(**fields)
    rows = {
        key: Status.objects.create(
            entity_type=entity_type, key=key, label=key.replace("_", " ").title(),
            is_initial=position == 0, position=position,
        )
        for position, key in enumerate(statuses)
    }
    for source, target in transitions:
        Transition.objects.create(entity_type=entity_type, source=rows[source], target=rows[target])
    for status, name, expression, message in requirements:
        requirement = Requirement(entity_type=entity_type, status=rows[status], name=name,
                                  expression=expression, message=message)
        requirement.full_clean()
        requirement.save()
    return entity_type


def order_data(**overrides) -> dict:
    """Valid order data (it satisfies every requirement of `approved`)."""
    return {**demo_order_data(1), **overrides}


def make_order(**overrides) -> Entity:
    """An order through `entity_create`. `reference`, `entity_type` and `data` replace the
    defaults; any other keyword overrides one top-level field of the data."""
    entity_type = overrides.pop("entity_type", None) or order_type_ensure()
    reference = overrides.pop("reference", None) or order_reference(90000 + next(_numbers))
    data = overrides.pop("data", None)
    data = order_data(**overrides) if data is None else data
    return entity_create(entity_type=entity_type, reference=reference, data=data)


# What the data migrations create, as (module, function); both functions update_or_create.
MIGRATION_ROWS = {
    "case_type": ("entities.migrations.0002_case_type", "create_case_type"),
    "sweeper_schedule": ("automation.migrations.0002_sweeper_schedule", "add_schedule"),
}


def migration_rows(*names: str) -> None:
    """Make again what the named data migrations create (all of them by default): a
    transactional test's flush empties the tables, and serialized_rollback breaks once
    a transactional test without it has made the content types again."""
    from django.apps import apps

    for name in names or MIGRATION_ROWS:
        module, function = MIGRATION_ROWS[name]
        getattr(import_module(module), function)(apps, None)
