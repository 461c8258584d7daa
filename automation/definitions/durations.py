"""Durations as people read them ("1.2 s", "3 min 4 s", "2 d"), for the step summaries
of the step types and for the admin pages (automation.views.present), and durations as
a definition writes them (the `wait` and `waitForEvent` steps: parse_duration_ms)."""

import re
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


# A duration as a definition writes it: "250ms", "2s", "1.5m", "5m", "2h", "3d", or
# ISO 8601 ("PT2S", "P1DT2H", "PT0.5S"); a whole number is milliseconds, as a step's
# `timeout` has always been.
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
DURATION_HINT = 'Use a duration such as "30s", "5m", "2h", "1d" or ISO 8601 "PT2S".'


def parse_duration_ms(value: Any) -> int:
    """Milliseconds of a duration; ValueError with a message people can act on."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"A duration is required. {DURATION_HINT}")
    short = _SHORT.match(value)
    if short:
        return round(float(short.group(1)) * _UNITS_MS[short.group(2)])
    iso = _ISO.match(value.strip().upper())
    if iso and value.strip().upper() not in ("P", "PT") and not value.strip().upper().endswith("T"):
        days, hours, minutes, seconds = (float(part) if part else 0 for part in iso.groups())
        return round(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)
    raise ValueError(f"'{value}' is not a duration. {DURATION_HINT}")


def duration_problem(value: Any, *, low_ms: int = 1, high_ms: int = 366 * 86_400_000) -> str | None:
    """What is wrong with a duration a definition gives; None when it is usable."""
    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        return str(exc)
    if not low_ms <= ms <= high_ms:
        return f"The duration must be from {human_ms(low_ms)} to {human_ms(high_ms)}."
    return None
