"""Small presentation helpers shared by the admin lists and the staff pages."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def status_pill(status: str) -> SafeString:
    """Run, step, batch and approval statuses share one palette (see ui.css)."""
    return format_html(
        '<span class="ef-status ef-status-{}">{}</span>',
        status or "none",
        (status or "—").replace("_", " "),
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def duration(seconds: float | None) -> str:
    """1.2 s, 340 ms, 3 min 4 s, 2 h 5 min."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    return duration(((end or timezone.now()) - start).total_seconds())


def ms(value: int | None) -> str:
    return "—" if value is None else duration(value / 1000)


def trigger_summary(definition: dict) -> str:
    parts = []
    for trig in (definition or {}).get("triggers") or []:
        if not isinstance(trig, dict):
            continue
        config = trig.get("config") if isinstance(trig.get("config"), dict) else {}
        kind = trig.get("type")
        if kind == "status":
            text = f"{config.get('entityType', '?')} enters {config.get('status', '?')}"
        elif kind == "event":
            text = f"event {config.get('eventType', '?')}"
        elif kind == "schedule":
            text = f"cron {config.get('cron', '?')}"
        elif kind == "webhook":
            text = f"webhook {config.get('method', 'POST')} /hooks{config.get('path', '')}"
        else:
            text = str(kind or "?")
        parts.append(text + (" (if …)" if trig.get("condition") else ""))
    return ", ".join(parts) or "manual only"


def human_ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return duration(value / 1000) if value < 86_400_000 else f"{value / 86_400_000:g} d"


def until(moment: datetime | None) -> str:
    if moment is None:
        return ""
    delta = moment - timezone.now()
    return "overdue" if delta < timedelta(0) else f"in {duration(delta.total_seconds())}"
