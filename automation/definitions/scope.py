"""The one place an expression's scope is put together.

Trigger conditions, steps, the dry run and explain all evaluate CEL against the same
names (docs/user-guide/expressions.md): `input`, `parameters`, `event`, `steps`,
`entity` (and `case` when the entity is a case), and, where they apply, `result`,
`item` and `index`. Each caller passes what it knows; what it does not know is empty.
"""

from typing import Any

# What an expression can ever see, by where it runs (checked when it is saved:
# docs/user-guide/expressions.md). `item` and `index` exist inside a loop's body only, but
# a step is not told statically whether it is in one, so steps may name them.
TRIGGER_NAMES = frozenset({"input", "parameters", "event", "steps", "entity", "case"})
STEP_NAMES = TRIGGER_NAMES | {"result", "item", "index"}


def expression_scope(*, input: Any = None, event: dict | None = None,
                     entity: dict | None = None, parameters: dict | None = None,
                     steps: dict | None = None, **known: Any) -> dict[str, Any]:
    """`entity` is the entity's snapshot (entities.outbox.entity_snapshot); `known` adds
    `result`, `item` and `index` where the caller has them."""
    scope: dict[str, Any] = {
        "input": {} if input is None else input,
        "parameters": parameters or {},
        "event": event or {},
        "steps": {} if steps is None else steps,
    }
    if entity is not None:
        scope["entity"] = entity
        if entity.get("type") == "case":
            scope["case"] = {"id": entity["id"], **(entity.get("data") or {})}
    scope.update(known)
    return scope


def event_scope(event) -> dict:
    """`event` as trigger conditions and steps see it (`event` an entities EntityEvent)."""
    body = {"id": event.pk, "type": event.type, "source": event.source,
            "occurredAt": event.occurred_at.isoformat() if event.occurred_at else None}
    if event.entity_id:
        body.update({"entity": event.snapshot, "from": event.from_status, "to": event.to_status,
                     "changedFields": event.changed_fields, "data": event.snapshot.get("data", {})})
    else:
        body["data"] = event.data
    return body


def trigger_scope(event) -> dict[str, Any]:
    """The scope a status or event trigger's condition is checked in."""
    scope_event = event_scope(event)
    return expression_scope(input=scope_event["data"], event=scope_event,
                            entity=event.snapshot if event.entity_id else None)
