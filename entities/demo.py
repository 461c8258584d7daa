"""Demo data: the `order` entity type and a few hundred orders to click through.

Shared by `manage.py load_demo` and the tests, so both see the same order type.
"""

import random
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import transaction

from entities.models import Entity, EntityType, Requirement, Status, Transition
from entities.services import entity_create

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo12345"  # noqa: S105 - a documented demo login

ORDER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "email": {"type": "string"},
            },
            "required": ["name"],
        },
        "total": {"type": "number", "minimum": 0},
        "items": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
    "required": ["customer", "total"],
}

# key, label, colour, initial, final
ORDER_STATUSES = [
    ("received", "Received", "#2563eb", True, False),
    ("approved", "Approved", "#16a34a", False, False),
    ("shipped", "Shipped", "#4b5563", False, True),
    ("suspended", "Suspended", "#d97706", False, False),
]
ORDER_TRANSITIONS = [
    ("received", "approved"),
    ("approved", "shipped"),
    ("approved", "suspended"),
    ("suspended", "approved"),
]
# name, expression, message — all required for `approved`
ORDER_REQUIREMENTS = [
    (
        "Customer email present",
        'has(entity.data.customer) && has(entity.data.customer.email) '
        '&& entity.data.customer.email != ""',
        "The customer's email address is missing.",
    ),
    ("Total above zero", "entity.data.total > 0", "The order total must be above zero."),
]

FIRST_NAMES = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances"]
LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov"]
CURRENCIES = ["EUR", "USD", "SEK", "GBP"]


@transaction.atomic
def order_type_ensure() -> EntityType:
    """Create or repair the `order` type so it matches the definition above."""
    order, _ = EntityType.objects.update_or_create(
        key="order",
        defaults={"name": "Order", "schema": ORDER_SCHEMA,
                  "description": "A customer order: received, approved when complete, shipped."},
    )
    statuses = {}
    for position, (key, label, color, initial, final) in enumerate(ORDER_STATUSES):
        statuses[key], _ = Status.objects.update_or_create(
            entity_type=order, key=key,
            defaults={"label": label, "color": color, "is_initial": initial,
                      "is_final": final, "position": position},
        )
    statuses["approved"].fallback = statuses["suspended"]
    statuses["approved"].save(update_fields=["fallback"])
    for source, target in ORDER_TRANSITIONS:
        Transition.objects.get_or_create(
            entity_type=order, source=statuses[source], target=statuses[target]
        )
    for position, (name, expression, message) in enumerate(ORDER_REQUIREMENTS):
        requirement = Requirement.objects.filter(entity_type=order, name=name).first()
        requirement = requirement or Requirement(entity_type=order, name=name)
        requirement.status = statuses["approved"]
        requirement.expression, requirement.message = expression, message
        requirement.position = position
        requirement.full_clean()
        requirement.save()
    return order


def order_reference(number: int) -> str:
    return f"ORD-{number:05d}"


def demo_order_data(number: int) -> dict:
    """Plausible order data; every tenth order has no customer email."""
    rng = random.Random(number)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    customer = {"name": f"{first} {last}"}
    if number % 10 != 7:
        customer["email"] = f"{first}.{last}{number}@example.com".lower()
    items = rng.randint(1, 8)
    return {
        "customer": customer,
        "total": round(items * rng.uniform(5, 120), 2),
        "items": items,
        "currency": rng.choice(CURRENCIES),
    }


def create_demo_orders(
    n: int, *, batch_size: int = 100, progress: Callable[[int, int], None] | None = None
) -> int:
    """Create orders ORD-00001..n that do not exist yet; returns how many were created.

    Each batch is one transaction, so an interrupted run keeps whole batches only and a
    rerun fills in the rest.
    """
    order = order_type_ensure()
    wanted = [order_reference(number) for number in range(1, n + 1)]
    existing = set(
        Entity.objects.filter(entity_type=order, reference__startswith="ORD-")
        .values_list("reference", flat=True)
    )
    missing = [(number, ref) for number, ref in enumerate(wanted, 1) if ref not in existing]
    done = 0
    for start in range(0, len(missing), batch_size):
        with transaction.atomic():
            for number, reference in missing[start : start + batch_size]:
                entity_create(entity_type=order, reference=reference, data=demo_order_data(number))
        done += len(missing[start : start + batch_size])
        if progress:
            progress(done, len(missing))
    return done


def demo_user_ensure():
    """A staff superuser whose login the command prints; its password is reset each time."""
    user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(DEMO_PASSWORD)
    user.save()
    return user
