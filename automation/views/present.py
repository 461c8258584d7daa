"""Small presentation helpers shared by the admin lists and the staff pages."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from automation.definitions.durations import duration, human_ms

__all__ = ["between", "duration", "human_ms", "ms", "pretty_json", "status_pill",
           "trigger_summary", "until"]


def status_pill(status: str) -> SafeString:
    """Run, step, batch and approval statuses share one palette (see ui.css)."""
    return format_html(
        '<span class="ef-status ef-status-{}">{}</span>',
        status or "none",
        (status or "—").replace("_", " "),
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


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


def until(moment: datetime | None) -> str:
    if moment is None:
        return ""
    delta = moment - timezone.now()
    return "overdue" if delta < timedelta(0) else f"in {duration(delta.total_seconds())}"
