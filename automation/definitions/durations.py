"""Durations as people read them ("1.2 s", "3 min 4 s", "2 d"), for the step summaries
of the step types and for the admin pages (automation.views.present)."""

from typing import Any


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


def human_ms(value: Any) -> str:
    """A duration given in milliseconds (a step's `timeout`); "" when there is none."""
    if not isinstance(value, int | float):
        return ""
    return duration(value / 1000) if value < 86_400_000 else f"{value / 86_400_000:g} d"
