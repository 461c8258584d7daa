"""Wires automation into the entities outbox and model signals."""


def connect() -> None:
    from django.conf import settings
    from django.db.models.signals import post_delete, post_save

    from automation.functions.catalog import functions_changed
    from automation.models import Function

    for signal in (post_save, post_delete):
        signal.connect(functions_changed, sender=Function, dispatch_uid=f"catalog-{signal}")
    if not getattr(settings, "ENTITYFLOW_ENGINE_ENABLED", True):
        return
    from automation.services import approvals
    from automation.triggers import events
    from entities import outbox

    outbox.subscribe("automation", events.handle_event, interested=events.is_interesting,
                     statement=events.event_statement, prepare=events.event_prepare,
                     with_save=events.event_with_save)
    # runs waiting in a waitForEvent step (docs/user-guide/waits.md)
    outbox.subscribe("waits", events.handle_waiting_runs, interested=events.waiting_runs_interested)
    # a change to the data a pending approval covers re-issues it (docs/user-guide/human-tasks.md)
    outbox.subscribe("approvals", approvals.entity_changed,
                     interested=approvals.entity_change_matters)
