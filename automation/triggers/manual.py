"""Manual triggers: staff or an API client start a process by hand.

A process may declare `{"type": "manual", "condition": "..."}`; the condition is then
checked against the input (and entity) before the run starts, like any trigger's. A
process without a manual trigger may still be started by hand (ops tooling does that).
"""

from typing import Any

from django.db.models import F

from automation.definitions.scope import expression_scope
from automation.triggers.conditions import condition_holds
from entities.outbox import entity_snapshot


def manual_start(
    *, process, input: Any = None, entity=None, user=None, parameters: dict | None = None,
    source: str = "manual", idempotency_key: str | None = None,
):
    """Start a manual run, or return None (counting a skip) when the process's manual
    trigger has a condition that does not hold."""
    from automation.models import ProcessTrigger
    from automation.services.runs import run_start

    trigger = (ProcessTrigger.objects.filter(process=process, type=ProcessTrigger.Type.MANUAL)
               .order_by("position").first())
    input = {} if input is None else input  # any JSON value; only null means none
    event = {"type": "manual", "source": source, "data": input}
    scope = expression_scope(input=input, event=event, parameters=parameters,
                             entity=entity_snapshot(entity) if entity is not None else None)
    if trigger is not None and not condition_holds(trigger.pk, trigger.condition, scope):
        ProcessTrigger.objects.filter(pk=trigger.pk).update(skipped_count=F("skipped_count") + 1)
        return None
    run, _ = run_start(
        process=process, input=input, entity=entity, user=user, parameters=parameters,
        trigger={"type": "manual", "source": source, "triggerId": trigger.pk if trigger else None,
                 "event": event},
        idempotency_key=idempotency_key,
    )
    return run

