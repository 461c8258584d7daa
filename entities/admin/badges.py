"""Status badges: label and colour come from the Status rows of each entity type."""

import re
from collections.abc import Iterable

from django.utils.html import format_html

from entities.models import Entity, Status

DEFAULT_COLOR = "#6b7280"
_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


def status_map(entities: Iterable[Entity]) -> dict[tuple[int, str], tuple[str, str]]:
    """{(type_id, key): (label, color)} for the types of `entities`, in one query."""
    type_ids = {entity.entity_type_id for entity in entities}
    if not type_ids:
        return {}
    rows = Status.objects.filter(entity_type_id__in=type_ids).values_list(
        "entity_type_id", "key", "label", "color"
    )
    return {(type_id, key): (label, color) for type_id, key, label, color in rows}


def safe_color(color: str | None) -> str:
    return color if color and _HEX.match(color) else DEFAULT_COLOR


def text_color(color: str) -> str:
    """Dark text on light badges, white on dark ones (WCAG relative luminance)."""
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    r, g, b = (int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))
    channel = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * channel[0] + 0.7152 * channel[1] + 0.0722 * channel[2]
    return "#111827" if luminance > 0.4 else "#ffffff"


def badge(key: str, label: str | None = None, color: str | None = None) -> dict:
    color = safe_color(color)
    return {"key": key, "label": label or key or "—", "color": color, "text": text_color(color)}


def badge_for(entity: Entity, statuses: dict | None = None) -> dict:
    statuses = status_map([entity]) if statuses is None else statuses
    label, color = statuses.get((entity.entity_type_id, entity.status), (None, None))
    return badge(entity.status, label, color)


def badge_html(info: dict):
    return format_html(
        '<span class="ef-badge" title="{}" style="background:{};color:{};padding:2px 8px;'
        'border-radius:999px;font-size:11px;font-weight:600;white-space:nowrap">{}</span>',
        info["key"], info["color"], info["text"], info["label"],
    )
