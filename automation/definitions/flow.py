"""Flow control in a definition: a process's `concurrency` and a trigger's `debounce` and
`dedupeKey` (docs/user-guide/concurrency.md). Checked when a process is saved; the
store and the trigger dispatch read the parsed rules."""

from dataclasses import dataclass
from typing import Any

from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.scope import TRIGGER_NAMES

ON_LIMIT = ("queue", "cancel-new", "cancel-running")
CONCURRENCY_KEYS = {"key", "limit", "onLimit", "processLimit"}
MAX_LIMIT = 10_000
DEFAULT_DEDUPE_WINDOW_MS = 24 * 3600 * 1000
MAX_WINDOW_MS = 30 * 24 * 3600 * 1000
DEBOUNCE_KEYS = {"key", "windowMs", "mode"}
DEBOUNCE_MODES = ("trailing", "leading")


@dataclass(frozen=True)
class Concurrency:
    key: str | None  # CEL; None: the run's entity id
    limit: int | None  # runs at once per key
    on_limit: str  # one of ON_LIMIT
    process_limit: int | None  # runs at once of the whole process


@dataclass(frozen=True)
class Debounce:
    key: str | None
    window_ms: int
    mode: str


def concurrency_of(definition: Any) -> Concurrency | None:
    """The parsed `concurrency` of a valid definition, None when it sets none."""
    raw = definition.get("concurrency") if isinstance(definition, dict) else None
    if not raw:
        return None
    return Concurrency(key=raw.get("key"), limit=raw.get("limit"),
                       on_limit=raw.get("onLimit", "queue"), process_limit=raw.get("processLimit"))


def debounce_of(trigger: dict) -> Debounce | None:
    raw = trigger.get("debounce")
    if not raw:
        return None
    return Debounce(key=raw.get("key"), window_ms=raw["windowMs"],
                    mode=raw.get("mode", "trailing"))


def check_concurrency(raw: Any, errors: DefinitionErrors) -> None:
    if raw is None:
        return
    path = "concurrency"
    if not isinstance(raw, dict):
        errors.add(path, "concurrency must be an object: {key?, limit, onLimit?, processLimit?}.")
        return
    for key in sorted(set(raw) - CONCURRENCY_KEYS, key=str):
        errors.add(f"{path}.{key}", f"Unknown key '{key}'; concurrency has "
                                    f"{', '.join(sorted(CONCURRENCY_KEYS))}.")
    if raw.get("limit") is None and raw.get("processLimit") is None:
        errors.add(path, "Set limit (runs at once per key), processLimit (runs at once of "
                         "the process) or both.")
    for name in ("limit", "processLimit"):
        _check_whole(raw, name, f"{path}.{name}", errors, 1, MAX_LIMIT)
    if raw.get("onLimit", "queue") not in ON_LIMIT:
        errors.add(f"{path}.onLimit", f"onLimit must be one of {', '.join(ON_LIMIT)}.")
    if "key" in raw:
        check_expression(raw["key"], f"{path}.key", errors, variables=TRIGGER_NAMES,
                         where="in a concurrency key")


def check_trigger_flow(trig: dict, path: str, errors: DefinitionErrors) -> None:
    """A trigger's `debounce`, `dedupeKey` and `dedupeWindowMs` (status and event
    triggers: the ones an entity's events start)."""
    for key in ("debounce", "dedupeKey"):
        if key in trig and trig.get("type") not in ("status", "event"):
            errors.add(f"{path}.{key}", f"{key} applies to status and event triggers only.")
    if "debounce" in trig:
        _check_debounce(trig["debounce"], f"{path}.debounce", errors)
    if "dedupeKey" in trig:
        check_expression(trig["dedupeKey"], f"{path}.dedupeKey", errors,
                         variables=TRIGGER_NAMES, where="in a dedupe key")
    if "dedupeWindowMs" in trig:
        if "dedupeKey" not in trig:
            errors.add(f"{path}.dedupeWindowMs", "dedupeWindowMs needs a dedupeKey.")
        _check_whole(trig, "dedupeWindowMs", f"{path}.dedupeWindowMs", errors, 1, MAX_WINDOW_MS)


def _check_debounce(raw: Any, path: str, errors: DefinitionErrors) -> None:
    if not isinstance(raw, dict):
        errors.add(path, "debounce must be an object: {key?, windowMs, mode?}.")
        return
    for key in sorted(set(raw) - DEBOUNCE_KEYS, key=str):
        errors.add(f"{path}.{key}", f"Unknown key '{key}'; debounce has "
                                    f"{', '.join(sorted(DEBOUNCE_KEYS))}.")
    if "windowMs" not in raw:
        errors.add(f"{path}.windowMs", "debounce needs windowMs (milliseconds).")
    _check_whole(raw, "windowMs", f"{path}.windowMs", errors, 1, MAX_WINDOW_MS)
    if raw.get("mode", "trailing") not in DEBOUNCE_MODES:
        errors.add(f"{path}.mode", f"mode must be one of {', '.join(DEBOUNCE_MODES)}.")
    if "key" in raw:
        check_expression(raw["key"], f"{path}.key", errors, variables=TRIGGER_NAMES,
                         where="in a debounce key")


def _check_whole(raw: dict, name: str, path: str, errors: DefinitionErrors, low: int,
                 high: int) -> None:
    value = raw.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or not low <= value <= high):
        errors.add(path, f"{name} must be a whole number from {low} to {high}.")
