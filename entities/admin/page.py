"""What the entity page shows besides the form: data, unmet requirements, links, events, runs."""

import json

from django.core.exceptions import FieldError
from django.urls import NoReverseMatch, reverse

from entities.admin.badges import badge, status_map
from entities.models import Entity, EntityEvent

TIMELINE_LENGTH = 50


def entity_page(entity: Entity) -> dict:
    statuses = status_map([entity])

    def status_badge(key: str) -> dict | None:
        if not key:
            return None
        label, color = statuses.get((entity.entity_type_id, key), (None, None))
        return badge(key, label, color)

    events = list(entity.events.order_by("-id")[:TIMELINE_LENGTH])
    return {
        "badge": status_badge(entity.status),
        "data_json": json.dumps(entity.data or {}, indent=2, ensure_ascii=False, sort_keys=True),
        "unmet": entity.unmet_requirements or [],
        "links": list(entity.external_links.all()),
        "timeline": [timeline_item(event, status_badge) for event in events],
        "timeline_truncated": len(events) == TIMELINE_LENGTH,
        "runs": recent_runs(entity),
    }


def timeline_item(event: EntityEvent, status_badge) -> dict:
    moved = bool(event.from_status) and event.from_status != event.to_status
    return {
        "event": event,
        "kind": event.type.rsplit(".", 1)[-1].replace("_", " "),
        "from": status_badge(event.from_status) if moved else None,
        "to": status_badge(event.to_status) if moved or not event.from_status else None,
        "passed": [status_badge(key) for key in (event.entered_statuses or [])[:-1]],
        "changed": [name for name in event.changed_fields or [] if name != "status"],
    }


def recent_runs(entity: Entity, limit: int = 20) -> list[dict]:
    """Runs of this entity when the automation app adds them (the `runs` reverse relation)."""
    manager = getattr(entity, "runs", None)
    if manager is None:
        return []
    try:
        runs = list(manager.select_related("process").order_by("-created_at")[:limit])
    except FieldError:  # the run model changed shape; still show what it has
        runs = list(manager.all()[:limit])
    items = []
    for run in runs:
        try:
            name = f"admin:{run._meta.app_label}_{run._meta.model_name}_change"
            url = reverse(name, args=[run.pk])
        except NoReverseMatch:
            url = ""
        items.append({"label": str(run), "status": getattr(run, "status", ""),
                      "created_at": getattr(run, "created_at", None), "url": url})
    return items
