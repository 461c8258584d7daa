"""`priority` in a definition: on the process (its runs' default) and on a trigger (the
runs that trigger starts); docs/user-guide/priority.md. The levels are the models'."""

from typing import Any

from automation.definitions.errors import DefinitionErrors
from automation.models import Priority

LEVELS = tuple(Priority.values)  # high, normal, low


def check_priority(value: Any, path: str, errors: DefinitionErrors) -> None:
    if value is not None and value not in LEVELS:
        errors.add(path, f"priority must be one of {', '.join(LEVELS)}; got {value!r}.")


def defined_priorities(definition: dict) -> tuple[str | None, tuple[tuple[str, str | None], ...]]:
    """(the process's priority, each trigger's (type, priority) by position), None where
    unset."""
    triggers = [t if isinstance(t, dict) else {} for t in definition.get("triggers") or []]
    return definition.get("priority"), tuple((t.get("type"), t.get("priority")) for t in triggers)
