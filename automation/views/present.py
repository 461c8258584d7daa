"""Small presentation helpers shared by the admin lists and the staff pages."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from automation.definitions.durations import duration, human_ms
from automation.definitions.webhook_config import is_public

__all__ = ["between", "duration", "human_ms", "ms", "pretty_json", "public_webhook_warnings",
           "status_pill", "trigger_summary", "until"]


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


PUBLIC_MARK = " ⚠ public: anyone may call it"


def public_webhook_warnings(definition: object) -> list[str]:
    """One warning per webhook trigger that verifies nothing (config.public)."""
    triggers = definition.get("triggers") if isinstance(definition, dict) else None
    return [f"triggers[{i}]: the webhook /hooks{t['config'].get('path', '')} is public: "
            "anyone who knows the URL can start this process (rate limited per path). "
            "Prefer a verify preset or a token."
            for i, t in enumerate(triggers if isinstance(triggers, list) else [])
            if isinstance(t, dict) and t.get("type") == "webhook" and is_public(t.get("config"))]


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
            text += PUBLIC_MARK if is_public(config) else ""
        else:
            text = str(kind or "?")
        parts.append(text + (" (if …)" if trig.get("condition") else ""))
    return ", ".join(parts) or "manual only"


def until(moment: datetime | None) -> str:
    if moment is None:
        return ""
    delta = moment - timezone.now()
    return "overdue" if delta < timedelta(0) else f"in {duration(delta.total_seconds())}"
