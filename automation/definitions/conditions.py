"""Evaluating a trigger's condition, and what it read.

The trigger types answer "does it hold?" through automation.triggers.conditions;
explain (automation.services.explain) also wants why: the error's message, or the
values the condition saw (docs/user-guide/explain.md). Both go through `check_condition`,
so a condition cannot hold for one and not for the other.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from entities.exceptions import ExpressionError
from entities.expressions import evaluate_bool

# String literals first, so a name inside quotes is not taken for a read.
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_PATHS = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
ABSENT = {"absent": True}


@dataclass(frozen=True)
class ConditionCheck:
    holds: bool
    error: str | None = None
    seen: dict[str, Any] = field(default_factory=dict)


def check_condition(source: str | None, scope: dict[str, Any], *,
                    with_values: bool = False) -> ConditionCheck:
    """Whether `source` holds in `scope`; an expression that cannot be evaluated does not
    hold and says why. `with_values`: also the values of the names it reads."""
    if not source:
        return ConditionCheck(True)
    try:
        holds, error = evaluate_bool(source, scope), None
    except ExpressionError as exc:
        holds, error = False, exc.message
    return ConditionCheck(holds, error, values_seen(source, scope) if with_values else {})


def values_seen(source: str, scope: dict[str, Any]) -> dict[str, Any]:
    """{"entity.data.total": 120, "entity.data.customer.email": {"absent": true}} for the
    dotted names `source` reads from `scope` (functions and literals left out)."""
    seen: dict[str, Any] = {}
    text = _STRINGS.sub('""', source)
    for match in _PATHS.finditer(text):
        path = match.group(1)
        after = text[match.end():].lstrip()
        if after.startswith("(") or path.split(".", 1)[0] not in scope or path in seen:
            continue  # a function call, or a name the scope does not have (a loop variable)
        seen[path] = _lookup(scope, path.split("."))
    return seen


def _lookup(scope: dict, parts: list[str]) -> Any:
    value: Any = scope
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return ABSENT
        value = value[part]
    return value
