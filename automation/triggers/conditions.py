"""The one check of a trigger's condition, shared by all four trigger types.

A condition that cannot be evaluated (an unknown name, a type error) is logged and
counts as "does not hold": the trigger skips, as it would for a false condition, and a
broken condition never starts a run nor fails the event, request or schedule that
asked. Explain asks the same check for its reasons (automation.definitions.conditions);
`condition_skip_reason` says why a trigger skipped, so the event can keep it
(docs/user-guide/triggers.md#skipped-triggers).
"""

import logging
from typing import Any

from automation.definitions.conditions import check_condition

logger = logging.getLogger(__name__)


def condition_holds(trigger_id: int | None, source: str | None, scope: dict[str, Any]) -> bool:
    """Whether trigger `trigger_id`'s condition `source` holds in `scope`
    (automation.definitions.scope.expression_scope). No condition always holds."""
    return condition_skip_reason(trigger_id, source, scope) is None


CONDITION_FALSE = "The trigger's condition is false."


def condition_skip_reason(trigger_id: int | None, source: str | None,
                          scope: dict[str, Any]) -> str | None:
    """None when the condition holds (or there is none); else why the trigger skips:
    the condition is false, or could not be evaluated (with the expression's message)."""
    check = check_condition(source, scope)
    if check.error is not None:
        logger.warning("trigger %s condition failed: %s", trigger_id, check.error)
        return f"The trigger's condition could not be evaluated: {check.error}"
    return None if check.holds else CONDITION_FALSE
