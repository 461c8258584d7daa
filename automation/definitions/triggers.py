"""The trigger part of a definition: its types, keys and each type's config.

Cron and time zone of schedules (schedule_config), path, method and credentials of
webhooks (webhook_config) are checked here too, so a definition is refused at save time
for a trigger that could not be served. The trigger types (automation.triggers) use the
same rules; definitions never import them."""

from typing import Any

from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.flow import check_trigger_flow
from automation.definitions.priority import check_priority
from automation.definitions.schedule_config import validate_schedule_config
from automation.definitions.scope import TRIGGER_NAMES
from automation.definitions.webhook_config import validate_webhook_config

TRIGGER_TYPES = {"status", "event", "schedule", "webhook", "manual"}
TRIGGER_KEYS = {"type", "config", "condition", "name", "description", "priority", "debounce",
                "dedupeKey", "dedupeWindowMs"}


def check_triggers(triggers: Any, errors: DefinitionErrors) -> None:
    if not isinstance(triggers, list):
        errors.add("triggers", "triggers must be a list.")
        return
    for i, trig in enumerate(triggers):
        path = f"triggers[{i}]"
        if not isinstance(trig, dict) or trig.get("type") not in TRIGGER_TYPES:
            errors.add(
                f"{path}.type", f"Trigger type must be one of {', '.join(sorted(TRIGGER_TYPES))}."
            )
            continue
        for key in sorted(set(trig) - TRIGGER_KEYS, key=str):
            errors.add(f"{path}.{key}", f"Unknown key '{key}'; a trigger has "
                                        f"{', '.join(sorted(TRIGGER_KEYS))}.")
        config = trig.get("config") or {}
        if not isinstance(config, dict):
            errors.add(f"{path}.config", "config must be an object.")
            continue
        required = {"status": ["entityType", "status"], "event": ["eventType"],
                    "schedule": ["cron"], "webhook": ["path"]}.get(trig["type"], [])
        for key in required:
            if not isinstance(config.get(key), str) or not config.get(key):
                errors.add(f"{path}.config.{key}", f"A {trig['type']} trigger needs config.{key}.")
        _check_trigger_config(trig["type"], config, path, errors)
        check_priority(trig.get("priority"), f"{path}.priority", errors)
        check_trigger_flow(trig, path, errors)
        if trig.get("condition") is not None:
            check_expression(trig.get("condition"), f"{path}.condition", errors,
                             variables=TRIGGER_NAMES, where="in a trigger condition")


def _check_trigger_config(kind: str, config: dict, path: str, errors: DefinitionErrors) -> None:
    """Cron and time zone of schedules, path and credentials of webhooks."""
    check = {"schedule": validate_schedule_config, "webhook": validate_webhook_config}.get(kind)
    for key, messages in (check(config, prefix=f"{path}.config") if check else {}).items():
        for message in messages:
            if message not in errors.fields.get(key, []):
                errors.add(key, message)


def trigger_reached(*, type: str, entity_type_key: str, status_key: str, event_type: str,
                    event) -> bool:
    """Whether a status or event trigger (a ProcessTrigger's fields) is reached by `event`
    (an EntityEvent): the rule the trigger index (automation.triggers.events) is keyed
    by, for explain, which looks at one entity's processes rather than all of them."""
    if type == "status":
        return bool(event.entity_type_key) and entity_type_key == event.entity_type_key \
            and status_key in (event.entered_statuses or ())
    if type == "event":
        return event_type == event.type and entity_type_key in ("", event.entity_type_key)
    return False
