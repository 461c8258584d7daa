"""Wires automation into the entities outbox and model signals."""


def connect() -> None:
    from django.conf import settings

    if not getattr(settings, "ENTITYFLOW_ENGINE_ENABLED", True):
        return
    from automation.triggers import index
    from entities import outbox

    outbox.subscribe("automation", index.handle_event, interested=index.is_interesting)
