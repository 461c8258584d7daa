"""What the entity page shows besides the form: data, unmet requirements, links, the
why-timeline (entities.timeline), runs."""

import json

from django.core.exceptions import FieldError
from django.urls import NoReverseMatch, reverse

from entities.actors import actor_view
from entities.admin.badges import badge, status_map
from entities.models import Entity
from entities.timeline import KINDS, timeline

TIMELINE_LENGTH = 50


def entity_page(entity: Entity) -> dict:
    statuses = status_map([entity])

    def status_badge(key: str) -> dict | None:
        if not key:
            return None
        label, color = statuses.get((entity.entity_type_id, key), (None, None))
        return badge(key, label, color)

    entries, _ = timeline(entity, limit=TIMELINE_LENGTH, newest=True)
    return {
        "badge": status_badge(entity.status),
        "data_json": json.dumps(entity.data or {}, indent=2, ensure_ascii=False, sort_keys=True),
        "unmet": entity.unmet_requirements or [],
        "links": list(entity.external_links.all()),
        "timeline": [timeline_item(entry, status_badge) for entry in reversed(entries)],
        "timeline_truncated": len(entries) == TIMELINE_LENGTH,
        "timeline_kinds": [(kind, kind.replace("_", " ")) for kind in KINDS],
        "runs": recent_runs(entity),
    }


def timeline_item(entry, status_badge) -> dict:
    """One entry of the why-timeline, newest first on the page; status moves with badges."""
    details = entry.details
    moved = entry.kind == "status"
    return {
        "entry": entry,
        "kind": entry.kind,
        "label": entry.kind.replace("_", " "),
        "actor": actor_view(entry.actor),
        "from": status_badge(details.get("from") or "") if moved else None,
        "to": status_badge(details.get("to") or "") if moved else None,
        "passed": [status_badge(key) for key in details.get("passedThrough", [])] if moved else [],
        "changes": details.get("changes") or [],
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
